"""``WSAuth``: wires tickets into a Sanic app."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from typing import Any, TypeVar

from sanic import Request, Sanic

from ..exceptions import ConfigurationError, WSAuthError
from ..stores.base import ReplayStore
from ..stores.memory import MemoryReplayStore
from ..tokens import MIN_KEY_BYTES, TicketIssuer, TicketVerifier
from .config import WSAuthConfig, config_key, resolve_config
from .endpoint import Authenticate, Authorize, TicketEndpoint
from .guard import HandshakeGuard
from .lifetime import LifetimeManager
from .origin import OriginPolicy
from .policy import audience, public
from .redaction import TicketRedactor, install_redaction
from .signals import TICKET_REJECTED, notify
from .static import register_static

__all__ = ["WSAuth"]

logger = logging.getLogger("sanic_wsauth")
F = TypeVar("F", bound=Callable[..., Any])

#: Runs before any other request middleware (Sanic runs higher priority first).
GUARD_PRIORITY = 10_000


class WSAuth:
    """Authenticate every websocket route of ``app`` with one-time tickets.

    Args:
        app: The Sanic application.
        secret_keys: Signing key(s), oldest to newest; ``WSAUTH_SECRET`` wins.
        authenticate: ``authenticate(request)`` (sync or async) returns the
            caller's subject (a string, ``(subject, claims)`` or an
            :class:`Identity`) or None. Without it no ticket endpoint is
            registered: tickets are then issued elsewhere.
        authorize: ``authorize(request, identity, audience)`` returns whether
            the caller may have a ticket for ``audience``.
        store: The replay store; by default Redis when ``WSAUTH_REDIS_URL``
            is set, else an in-memory set.
        **options: Any setting of :class:`WSAuthConfig` by name.

    Raises:
        ConfigurationError: an unknown option or a wrong value (at start-up
            for values read from ``app.config``).
        WeakSecretError: at start-up, when no strong secret is configured.
    """

    public = staticmethod(public)
    audience = staticmethod(audience)

    def __init__(
        self,
        app: Sanic[Any, Any],
        *,
        secret_keys: Any = None,
        authenticate: Authenticate | None = None,
        authorize: Authorize | None = None,
        store: ReplayStore | None = None,
        **options: Any,
    ) -> None:
        if getattr(app.ctx, "wsauth", None) is not None:
            # A second guard would claim each ticket again: with a shared
            # store, every handshake would be refused as replayed.
            raise ConfigurationError(f"WSAuth is already installed on app {app.name!r}")
        if secret_keys is not None:
            options["secret_keys"] = secret_keys
        self.app = app
        self._options = options
        self._store_given = store
        self._store: ReplayStore | None = store
        self._config: WSAuthConfig | None = None
        self._issuer: TicketIssuer | None = None
        self._verifier: TicketVerifier | None = None
        self.origin_policy: OriginPolicy | None = None
        #: Outcomes by reason, per worker: "accepted" for good handshakes, an
        #: error's reason for each refused handshake or refresh, "refreshed"
        #: and "connection_age" for in-band refreshes and capped sockets.
        self.counters: Counter[str] = Counter()

        # Routes must exist before the app starts: read their paths now.
        early = resolve_config({**app.config, config_key("secret"): "-" * MIN_KEY_BYTES}, options)
        self._early = early
        self._has_endpoint = authenticate is not None
        self._redactor = TicketRedactor(
            query_param=early.query_param, prefix=early.subprotocol_prefix
        )
        if early.redact_logs:
            install_redaction(self._redactor)
        app.ctx.wsauth = self
        self._guard = HandshakeGuard(self)
        app.register_middleware(self._guard, "request", priority=GUARD_PRIORITY)
        # Connection age: a per-socket hook only when the cap is configured,
        # so sockets without it pay nothing (see ext/lifetime.py).
        self._lifetime = LifetimeManager(self)
        self._lifetime_armed = early.max_connection_age > 0
        if self._lifetime_armed:
            app.add_signal(self._lifetime.before_handler, "websocket.handler.before")
            app.add_signal(self._lifetime.after_handler, "websocket.handler.after")
            app.add_signal(self._lifetime.after_handler, "websocket.handler.exception")
        if authenticate is not None and early.token_path is not None:
            app.add_route(
                TicketEndpoint(self, authenticate, authorize),
                early.token_path,
                methods=["POST"],
                name="wsauth_token",
            )
        if early.static_path is not None:
            register_static(app, early.static_path)
        app.main_process_start(self._check_config)
        app.before_server_start(self._start)
        app.after_server_stop(self._stop)

    # -- lifecycle ---------------------------------------------------------

    def configure(self) -> WSAuthConfig:
        """Resolve the settings and build the issuer, verifier and policies.

        Called at start-up in every worker; call it yourself to use the
        extension without starting a server.

        Raises:
            ConfigurationError, WeakSecretError: the settings are unusable.
        """
        config = resolve_config(self.app.config, self._options)
        self._check_unchanged(config)
        self._issuer = TicketIssuer(
            config.secret,
            salt=config.salt,
            max_age=config.max_age,
            max_token_bytes=config.max_token_bytes,
        )
        self._verifier = TicketVerifier(
            [*config.verify_secrets, *config.secret],
            salt=config.salt,
            max_age=config.max_age,
            leeway=config.leeway,
            max_token_bytes=config.max_token_bytes,
        )
        try:
            self.origin_policy = (
                OriginPolicy(config.allowed_origins, allow_missing=config.allow_missing_origin)
                if config.check_origin
                else None
            )
        except ValueError as exc:
            raise ConfigurationError(f"WSAUTH_ALLOWED_ORIGINS: {exc}") from None
        self._config = config
        return config

    def _check_unchanged(self, config: WSAuthConfig) -> None:
        """Refuse settings changed after ``WSAuth(app)`` that it already acted on.

        The routes (ticket endpoint, static client), the log redactor and the
        age cap's signal are made in the constructor, from the settings of
        that moment.
        """
        if config.max_connection_age > 0 and not self._lifetime_armed:
            # Signals cannot be added once the app runs: fail loudly rather
            # than leave sockets uncapped.
            raise ConfigurationError(
                "WSAUTH_MAX_CONNECTION_AGE was set after WSAuth() was created; set it in "
                "app.config (or the environment, or max_connection_age=) before WSAuth(app)"
            )
        early = self._early
        names = ["static_path", "query_param", "subprotocol_prefix"]
        if self._has_endpoint:
            names.insert(0, "token_path")
        for name in names:
            if getattr(config, name) != getattr(early, name):
                key = config_key(name)
                raise ConfigurationError(
                    f"{key} was set after WSAuth() was created and would not take effect; "
                    f"set it in app.config (or the environment, or {name}=) before WSAuth(app)"
                )

    def _make_store(self, config: WSAuthConfig) -> ReplayStore:
        if self._store_given is not None:
            return self._store_given
        if config.redis_url:
            from ..stores.redis import RedisReplayStore

            return RedisReplayStore(
                config.redis_url, prefix=config.redis_prefix, timeout=config.redis_timeout
            )
        return MemoryReplayStore(max_entries=config.store_max_entries)

    async def _check_config(self, app: Sanic[Any, Any]) -> None:
        # Runs once in the main process, before workers are spawned: a bad
        # secret stops start-up here with one clear message.
        config = self.configure()
        # Build the store without connecting: a bad WSAUTH_REDIS_URL stops
        # start-up here too, not in every worker.
        shared = self._make_store(config).shared
        workers = getattr(app.state, "workers", 1) or 1
        if not shared and workers > 1:
            logger.warning(
                "sanic-wsauth: the in-memory replay store is per worker; with %d workers a "
                "ticket can be used once in each. Set WSAUTH_REDIS_URL (or pass a "
                "RedisReplayStore) for one-time use across workers and hosts.",
                workers,
            )

    async def _start(self, app: Sanic[Any, Any]) -> None:
        config = self.configure()
        if config.redact_logs:
            install_redaction(self._redactor)
        self._store = self._make_store(config)
        await self._store.open()

    async def _stop(self, app: Sanic[Any, Any]) -> None:
        await self._lifetime.stop()
        if self._store is not None:
            await self._store.close()

    # -- state -------------------------------------------------------------

    @property
    def config(self) -> WSAuthConfig:
        """The resolved settings (after start-up or :meth:`configure`)."""
        if self._config is None:
            raise ConfigurationError("WSAuth is not configured yet: the server has not started")
        return self._config

    @property
    def issuer(self) -> TicketIssuer:
        """Mints tickets with the configured secret."""
        if self._issuer is None:
            raise ConfigurationError("WSAuth is not configured yet: the server has not started")
        return self._issuer

    @property
    def verifier(self) -> TicketVerifier:
        """Verifies tickets with every configured secret."""
        if self._verifier is None:
            raise ConfigurationError("WSAuth is not configured yet: the server has not started")
        return self._verifier

    @property
    def store(self) -> ReplayStore:
        """The replay store in use."""
        if self._store is None:
            raise ConfigurationError("WSAuth has no store yet: the server has not started")
        return self._store

    def issue(self, subject: str, **kwargs: Any) -> str:
        """Mint a ticket: a shortcut for ``wsauth.issuer.issue``."""
        return self.issuer.issue(subject, **kwargs)

    # -- observation -------------------------------------------------------

    async def _observe_rejection(self, request: Request, error: WSAuthError) -> None:
        self.counters[error.reason] += 1
        await notify(self.app, TICKET_REJECTED, {"request": request, "reason": error.reason})
