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

__all__ = ["REDACTED", "TicketRedactor", "install_redaction"]

REDACTED = "[redacted]"

#: Loggers that Sanic and websockets write request lines to.
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
    "sanic_wsauth",
)

# Standard LogRecord attributes that never hold request data.
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
        "msg",
        "args",
    }
)


class TicketRedactor(logging.Filter):
    """Replace tickets (and ticket-shaped strings) in log records.

    Redacted:

    - the value of the ticket query parameter, also when its name or value
      is percent-encoded (``?%74oken=``), and any query value that decodes
      to something ticket-shaped;
    - a subprotocol entry after the ticket prefix;
    - ticket-shaped text anywhere: a base64url JSON object (``eyJ…``) or a
      compressed segment (``.eJx…``) of 8 characters or more, with the rest
      of its dotted run; three dot-separated base64url segments ending in a
      43-character signature; and the base64url tail that websockets' debug
      log shows after the ``...`` of an elided frame.

    So neither a whole ticket nor a piece of one over 8 characters survives
    in Sanic's or websockets' log lines.

    Args:
        query_param: The ticket's query parameter (``WSAUTH_QUERY_PARAM``).
        prefix: The subprotocol prefix (``WSAUTH_SUBPROTOCOL_PREFIX``).
    """

    def __init__(self, *, query_param: str = "token", prefix: str = "wsauth.ticket.") -> None:
        super().__init__()
        self.query_param = query_param
        self._pair = re.compile(r"(?<=[?&;])([^=&;\s#\"'?]{1,256})=([^&;\s\"'#]*)")
        self.pattern = re.compile(
            "|".join(
                (
                    rf"(?<={re.escape(prefix)})[^\s,\"';]+",
                    r"\.?eJ[w-z][A-Za-z0-9_-]{5,}(?:\.[A-Za-z0-9_-]*)*",
                    r"eyJ[A-Za-z0-9_-]{5,}(?:\.[A-Za-z0-9_-]*)*",
                    r"[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]{43}(?![A-Za-z0-9_-])",
                    r"(?<=\.\.\.)[A-Za-z0-9_-]{6,}",
                )
            )
        )

    def _redact_pair(self, match: re.Match[str]) -> str:
        name, value = match.group(1), match.group(2)
        if not value:
            return match.group(0)
        decoded = unquote_plus(value) if "%" in value or "+" in value else value
        if unquote_plus(name) == self.query_param or (
            decoded is not value and self.pattern.search(decoded)
        ):
            return f"{name}={REDACTED}"
        return match.group(0)

    def redact(self, text: str) -> str:
        """Return ``text`` with every ticket replaced by ``[redacted]``."""
        if "=" in text:
            text = self._pair.sub(self._redact_pair, text)
        return self.pattern.sub(REDACTED, text)

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken record is not ours to fix
            return True
        redacted = self.redact(message)
        if redacted != message:
            record.msg = redacted
            record.args = None
        for key, value in record.__dict__.items():
            if key not in _SKIP and isinstance(value, str):
                record.__dict__[key] = self.redact(value)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.redact(logging.Formatter().formatException(record.exc_info))
        elif record.exc_text:
            record.exc_text = self.redact(record.exc_text)
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
