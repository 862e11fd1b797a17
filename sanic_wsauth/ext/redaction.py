"""A logging filter that keeps tickets out of every log line.

Sanic writes ``request.url`` (query string included) to its access log, its
error log and the websocket open/close lines; a ticket in the query string
would land in log files. The filter rewrites each record before any handler
formats it.
"""

from __future__ import annotations

import logging
import re
from urllib.parse import unquote_plus

__all__ = ["REDACTED", "RedactedTraceback", "TicketRedactor", "install_redaction"]

REDACTED = "[redacted]"

#: Loggers that Sanic, websockets and the ASGI servers that run Sanic write
#: request lines to (uvicorn's and hypercorn's do not propagate to the root
#: logger; uvicorn also hands ``uvicorn.error`` to websockets as its logger).
LOGGER_NAMES = (
    "sanic.root",
    "sanic.error",
    "sanic.access",
    "sanic.server",
    "sanic.websockets",
    "websockets",
    "websockets.server",
    "websockets.client",
    "websockets.protocol",
    "uvicorn",
    "uvicorn.error",
    "uvicorn.access",
    "gunicorn.error",
    "gunicorn.access",
    "hypercorn.error",
    "hypercorn.access",
    "sanic_wsauth",
)

# Standard LogRecord attributes that never hold request data (or that filter()
# handles itself).
_SKIP = frozenset(
    {
        "name",
        "levelname",
        "levelno",
        "pathname",
        "filename",
        "module",
        "funcName",
        "lineno",
        "created",
        "msecs",
        "relativeCreated",
        "thread",
        "threadName",
        "processName",
        "process",
        "taskName",
        "stack_info",
        "exc_info",
        "exc_text",  # redacted below, with exc_info
        "msg",
        "args",
    }
)


class RedactedTraceback(Exception):
    """Stands in for a logged exception whose text held a ticket.

    Its message is the whole traceback, redacted, so a formatter that formats
    ``record.exc_info`` itself shows that rather than the original.
    """


#: A maximal run of base64url characters and dots (a ticket is one such run).
#: Matched greedily from its first character and never retried inside, so
#: the scan is linear in the length of the line.
_RUN = re.compile(r"[A-Za-z0-9_.\-]{8,}")


def _ticket_shaped(run: str) -> bool:
    """Whether a base64url-and-dots run is, or holds a piece of, a ticket.

    Linear string checks only (no backtracking): a segment that starts like
    a base64url JSON object (``eyJ``) or a zlib stream (``eJ[w-z]``) with 8
    characters or more; a ``<payload>.<timestamp>.<43+ character signature>``
    tail; or what follows the ``...`` of an elided websockets frame.
    """
    segments = run.split(".")
    for segment in segments:
        if len(segment) >= 8 and (
            segment.startswith("eyJ") or (segment.startswith("eJ") and segment[2] in "wxyz")
        ):
            return True
    if (
        len(segments) >= 3
        and len(segments[-1]) >= 43
        and 2 <= len(segments[-2]) <= 11
        and len(segments[-3]) >= 4
    ):
        return True
    cut = run.rfind("...")
    return cut >= 0 and len(run) - cut - 3 >= 6


def _redact_run(match: re.Match[str]) -> str:
    run = match.group(0)
    return REDACTED if _ticket_shaped(run) else run


class TicketRedactor(logging.Filter):
    """Replace tickets (and ticket-shaped strings) in log records.

    Redacted:

    - the value of the ticket query parameter, also when its name or value
      is percent-encoded (``?%74oken=``), and any query value that decodes
      to something ticket-shaped;
    - a subprotocol entry after the ticket prefix;
    - ticket-shaped text anywhere: the whole dotted base64url run around a
      segment that starts like a base64url JSON object (``eyJ…``) or a
      compressed one (``.eJx…``), 8 characters or more; a run ending in
      ``<payload>.<timestamp>.<signature>``; and the tail that websockets'
      debug log shows after the ``...`` of an elided frame.

    So neither a whole ticket nor a piece of one over 8 characters survives
    in Sanic's or websockets' log lines. Every pattern is scanned in linear
    time (an 8 KB request line takes well under a millisecond), so crafted
    URLs cannot use the filter to stall the server.

    Args:
        query_param: The ticket's query parameter (``WSAUTH_QUERY_PARAM``).
        prefix: The subprotocol prefix (``WSAUTH_SUBPROTOCOL_PREFIX``).
    """

    def __init__(self, *, query_param: str = "token", prefix: str = "wsauth.ticket.") -> None:
        super().__init__()
        self.query_param = query_param
        self._pair = re.compile(r"(?<=[?&;])([^=&;\s#\"'?]{1,256})=([^&;\s\"'#]*)")
        self._entry = re.compile(rf"(?<={re.escape(prefix)})[^\s,\"';]+")
        self._prefix = prefix

    def _shapes(self, text: str) -> str:
        # Every ticket shape holds "eyJ", "eJ" or a dot (see _ticket_shaped):
        # a line with none of them (most log lines) needs no scan.
        if "." not in text and "eJ" not in text and "eyJ" not in text:
            return text
        return _RUN.sub(_redact_run, text)

    def _redact_pair(self, match: re.Match[str]) -> str:
        name, value = match.group(1), match.group(2)
        if not value:
            return match.group(0)
        decoded = unquote_plus(value) if "%" in value or "+" in value else value
        if unquote_plus(name) == self.query_param or (
            decoded is not value and self._shapes(decoded) != decoded
        ):
            return f"{name}={REDACTED}"
        return match.group(0)

    def redact(self, text: str) -> str:
        """Return ``text`` with every ticket replaced by ``[redacted]``."""
        if "=" in text:
            text = self._pair.sub(self._redact_pair, text)
        if self._prefix in text:
            text = self._entry.sub(REDACTED, text)
        return self._shapes(text)

    def _redact_args(self, record: logging.LogRecord) -> bool:
        """Redact a record's string arguments, keeping ``msg`` and the tuple's shape.

        Formatters that read the arguments themselves (uvicorn's access log
        unpacks five of them) keep working. Returns False, changing nothing,
        when the message built from the redacted arguments would still hold a
        ticket (one split across arguments, or inside an object's ``str``):
        the caller then replaces the whole message.
        """
        args = record.args
        if not isinstance(args, tuple) or not args:
            return False
        redacted = tuple(self.redact(arg) if isinstance(arg, str) else arg for arg in args)
        try:
            message = str(record.msg) % redacted
        except Exception:  # noqa: BLE001 - getMessage() worked with the originals
            return False
        if self.redact(message) != message:
            return False
        record.args = redacted
        return True

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken record is not ours to fix
            return True
        redacted = self.redact(message)
        if redacted != message and not self._redact_args(record):
            record.msg = redacted
            record.args = None
        for key, value in record.__dict__.items():
            if key not in _SKIP and isinstance(value, str):
                record.__dict__[key] = self.redact(value)
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            text = record.exc_text
            record.exc_text = self.redact(text)
            if record.exc_text != text and record.exc_info:
                # A formatter that formats exc_info itself (Sanic's JSON one
                # does) would print the ticket again: it gets the redacted text.
                # Also when another handler's formatter cached exc_text first.
                record.exc_info = (RedactedTraceback, RedactedTraceback(record.exc_text), None)
        return True


def install_redaction(redactor: TicketRedactor) -> None:
    """Attach ``redactor`` to Sanic's and websockets' loggers (idempotent).

    A filter on a logger sees only records made on that very logger, so it
    goes on each named logger, and on every handler attached to them or to
    the root logger, which also covers records propagated from child loggers.
    """
    loggers = [logging.getLogger(name) for name in LOGGER_NAMES]
    targets: list[logging.Filterer] = [*loggers]
    for logger in [*loggers, logging.getLogger()]:
        targets.extend(logger.handlers)
    for target in targets:
        if not any(isinstance(f, TicketRedactor) for f in target.filters):
            target.addFilter(redactor)
