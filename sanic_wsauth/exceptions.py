"""Errors raised by sanic-wsauth.

Every error carries a stable, machine-readable ``reason`` and the HTTP
``status`` the Sanic layer answers with. The body of a rejected handshake is
``{"error": reason}``; nothing else about the ticket is ever echoed.

.. code-block:: text

    WSAuthError
    ├── ConfigurationError              (start-up only, never sent to a client)
    │   └── WeakSecretError              reason "weak_secret"
    ├── TicketError                      401
    │   ├── MissingTicket                "missing"
    │   ├── MalformedTicket              "malformed"
    │   │   └── TicketTooLarge           "too_large"
    │   ├── BadSignature                 "bad_signature"
    │   ├── TicketExpired                "expired"
    │   ├── TicketNotYetValid            "not_yet_valid"
    │   └── TicketReplayed               "replayed"
    ├── SubprotocolRequired              400 "subprotocol_required"
    ├── ForbiddenError                   403
    │   ├── AudienceMismatch             "audience_mismatch"
    │   ├── IPMismatch                   "ip_mismatch"
    │   ├── OriginForbidden              "origin_forbidden"
    │   └── SubjectMismatch              "subject_mismatch"
    └── StoreUnavailable                 503 "store_unavailable"

Only this module's names are part of the public error API; driver errors
(redis-py, itsdangerous) are always re-raised as one of these ``from`` the
original.
"""

from __future__ import annotations

__all__ = [
    "AudienceMismatch",
    "BadHandshake",
    "BadSignature",
    "ConfigurationError",
    "ContextUnusable",
    "ForbiddenError",
    "IPMismatch",
    "MalformedTicket",
    "MissingTicket",
    "OriginForbidden",
    "StoreUnavailable",
    "SubjectMismatch",
    "SubprotocolRequired",
    "TicketError",
    "TicketExpired",
    "TicketNotYetValid",
    "TicketReplayed",
    "TicketTooLarge",
    "WSAuthError",
    "WeakSecretError",
]


class WSAuthError(Exception):
    """Root of every sanic-wsauth error.

    Attributes:
        reason: Stable machine-readable code, safe to send to a client.
        status: HTTP status the Sanic layer answers with.
    """

    reason: str = "error"
    status: int = 500

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or self.reason)


class ConfigurationError(WSAuthError):
    """The extension or a component was configured wrongly (start-up only)."""

    reason = "config"


class WeakSecretError(ConfigurationError):
    """A secret key is missing, not a string/bytes value, or too short."""

    reason = "weak_secret"


class TicketError(WSAuthError):
    """The ticket does not authenticate the request (HTTP 401)."""

    status = 401


class MissingTicket(TicketError):
    """No ticket was presented."""

    reason = "missing"


class MalformedTicket(TicketError):
    """The ticket is not in the v1 format, or carries an invalid payload."""

    reason = "malformed"


class TicketTooLarge(MalformedTicket):
    """The ticket exceeds the size cap; it was refused before any decoding."""

    reason = "too_large"


class BadSignature(TicketError):
    """No configured key produced the ticket's signature."""

    reason = "bad_signature"


class TicketExpired(TicketError):
    """The ticket is older than ``max_age`` plus the leeway."""

    reason = "expired"


class TicketNotYetValid(TicketError):
    """The ticket's timestamp lies further in the future than the leeway."""

    reason = "not_yet_valid"


class TicketReplayed(TicketError):
    """The ticket's ``jti`` has already been claimed once."""

    reason = "replayed"


class BadHandshake(WSAuthError):
    """Not a websocket handshake that websockets would accept.

    No ``Upgrade: websocket`` or ``Connection: upgrade``, a missing or
    invalid ``Sec-WebSocket-Key`` or ``Sec-WebSocket-Version: 13``, or an
    ``Upgrade``, ``Connection`` or ``Sec-WebSocket-Protocol`` list websockets
    cannot parse (a plain GET of a socket's URL, say). Refused before the ticket is verified, so the
    ticket is not spent on a handshake that would fail after the claim.
    """

    reason = "bad_handshake"
    status = 400


class SubprotocolRequired(WSAuthError):
    """The route negotiates subprotocols and the client offered none of them.

    Refused before the ticket is verified, so the ticket is not spent on a
    handshake that websockets would refuse anyway.
    """

    reason = "subprotocol_required"
    status = 400


class ForbiddenError(WSAuthError):
    """The ticket is authentic but not valid for this request (HTTP 403)."""

    status = 403


class AudienceMismatch(ForbiddenError):
    """The ticket was issued for another route or channel."""

    reason = "audience_mismatch"


class IPMismatch(ForbiddenError):
    """The ticket is bound to another client address."""

    reason = "ip_mismatch"


class OriginForbidden(ForbiddenError):
    """The handshake's ``Origin`` is not on the allowlist."""

    reason = "origin_forbidden"


class SubjectMismatch(ForbiddenError):
    """An in-band refresh ticket names another subject than the connection."""

    reason = "subject_mismatch"


class StoreUnavailable(WSAuthError):
    """The replay store could not record the claim; fail closed (HTTP 503)."""

    reason = "store_unavailable"
    status = 503


class ContextUnusable(WSAuthError):
    """The app's ``request.ctx`` type cannot hold ``ticket`` (HTTP 503).

    Found before the claim, so the ticket is not spent; logged once per
    handshake with what to change.
    """

    reason = "context_unusable"
    status = 503
