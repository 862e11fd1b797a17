"""The Sanic integration: ``WSAuth`` and its parts."""

from __future__ import annotations

from .config import WSAuthConfig
from .endpoint import Identity
from .extension import WSAuth
from .lifetime import AGE_CLOSE_CODE, AGE_CLOSE_REASON, REFRESH_CLOSE_CODE
from .policy import audience, public
from .redaction import TicketRedactor
from .signals import TICKET_ACCEPTED, TICKET_REJECTED

__all__ = [
    "AGE_CLOSE_CODE",
    "AGE_CLOSE_REASON",
    "REFRESH_CLOSE_CODE",
    "TICKET_ACCEPTED",
    "TICKET_REJECTED",
    "Identity",
    "TicketRedactor",
    "WSAuth",
    "WSAuthConfig",
    "audience",
    "public",
]
