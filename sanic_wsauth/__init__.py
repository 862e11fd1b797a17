"""sanic-wsauth: signed, one-time tickets that authenticate WebSocket handshakes.

The ticket core (:mod:`sanic_wsauth.tokens`) and the stores import no Sanic;
the Sanic extension is loaded on first use of ``WSAuth`` and its helpers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .exceptions import (
    AudienceMismatch,
    BadHandshake,
    BadSignature,
    ConfigurationError,
    ContextUnusable,
    ForbiddenError,
    IPMismatch,
    MalformedTicket,
    MissingTicket,
    OriginForbidden,
    StoreUnavailable,
    SubjectMismatch,
    SubprotocolRequired,
    TicketError,
    TicketExpired,
    TicketNotYetValid,
    TicketReplayed,
    TicketTooLarge,
    WeakSecretError,
    WSAuthError,
)
from .stores import MemoryReplayStore, ReplayStore
from .tokens import SALT, Ticket, TicketIssuer, TicketVerifier

if TYPE_CHECKING:
    from .ext import Identity, WSAuth, WSAuthConfig, audience, public
    from .stores.redis import RedisReplayStore

__version__ = "0.1.0"

__all__ = [
    "SALT",
    "AudienceMismatch",
    "BadHandshake",
    "BadSignature",
    "ConfigurationError",
    "ContextUnusable",
    "ForbiddenError",
    "IPMismatch",
    "Identity",
    "MalformedTicket",
    "MemoryReplayStore",
    "MissingTicket",
    "OriginForbidden",
    "RedisReplayStore",
    "ReplayStore",
    "StoreUnavailable",
    "SubjectMismatch",
    "SubprotocolRequired",
    "Ticket",
    "TicketError",
    "TicketExpired",
    "TicketIssuer",
    "TicketNotYetValid",
    "TicketReplayed",
    "TicketTooLarge",
    "TicketVerifier",
    "WSAuth",
    "WSAuthConfig",
    "WSAuthError",
    "WeakSecretError",
    "__version__",
    "audience",
    "public",
]

_LAZY_EXT = {"Identity", "WSAuth", "WSAuthConfig", "audience", "public"}


def __getattr__(name: str) -> Any:
    # Lazy so that `import sanic_wsauth.tokens` (which runs this file) loads no Sanic.
    if name in _LAZY_EXT:
        from . import ext

        return getattr(ext, name)
    if name == "RedisReplayStore":
        from .stores.redis import RedisReplayStore

        return RedisReplayStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
