"""The Sanic integration: ``WSAuth`` and its parts."""

from __future__ import annotations

from .config import WSAuthConfig
from .endpoint import Identity
from .extension import WSAuth
from .policy import audience, public
from .redaction import TicketRedactor

__all__ = ["Identity", "TicketRedactor", "WSAuth", "WSAuthConfig", "audience", "public"]
