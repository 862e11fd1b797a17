"""The benchmark servers: one Sanic app factory, four variants.

The variant comes from the environment (workers re-import the factory):

- ``public``: sanic-wsauth installed, the echo route marked ``@public`` (the
  no-auth baseline: the guard middleware runs and lets it through).
- ``memory``: sanic-wsauth with the in-memory replay store.
- ``redis``: sanic-wsauth with the Redis replay store.
- ``seed``: the seed's design rebuilt on Redis, without sanic-wsauth: the
  ticket endpoint stores a ``uuid4`` with ``SET ... EX 30``; a request
  middleware looks it up and deletes it with ``GETDEL`` before the handshake.

Every variant serves the same echo route at ``/ws``, ``GET /health``, and
``POST /authenticate/token`` (behind the same bearer-key check) except
``public``.
"""

from __future__ import annotations

import hmac
import os
from typing import Any

from sanic import HTTPResponse, Request, Sanic
from sanic.response import json as json_response
from sanic.response import text
from sanic.server.websockets.impl import WebsocketImplProtocol

from sanic_wsauth import WSAuth

from .seed import SEED_TTL, RedisTicketCache

__all__ = [
    "API_KEY_ENV",
    "PREFIX_ENV",
    "REDIS_ENV",
    "SECRET_ENV",
    "SUBJECT",
    "TIMEOUT_ENV",
    "VARIANTS",
    "VARIANT_ENV",
    "create_app",
]

VARIANT_ENV = "WSAUTH_BENCH_VARIANT"
SECRET_ENV = "WSAUTH_BENCH_SECRET"
REDIS_ENV = "WSAUTH_BENCH_REDIS_URL"
PREFIX_ENV = "WSAUTH_BENCH_PREFIX"
API_KEY_ENV = "WSAUTH_BENCH_API_KEY"
#: Optional: Sanic's request/response/keep-alive timeouts, in seconds.
TIMEOUT_ENV = "WSAUTH_BENCH_SANIC_TIMEOUT"
VARIANTS = ("public", "memory", "redis", "seed")
SUBJECT = "bench-user"


def _authenticated(request: Request, api_key: bytes) -> bool:
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        credentials.encode("utf-8", "surrogatepass"), api_key
    )


async def _echo(ws: WebsocketImplProtocol, subject: str) -> None:
    async for message in ws:
        body = message if isinstance(message, str) else message.decode("utf-8", "replace")
        await ws.send(f"{subject}: {body}")


def _add_ours(app: Sanic[Any, Any], variant: str, api_key: bytes) -> None:
    settings: dict[str, Any] = {"secret_keys": os.environ[SECRET_ENV]}
    if variant == "redis":
        settings["redis_url"] = os.environ[REDIS_ENV]
        settings["redis_prefix"] = os.environ[PREFIX_ENV] + "jti:"

    def authenticate(request: Request) -> str | None:
        return SUBJECT if _authenticated(request, api_key) else None

    WSAuth(app, authenticate=authenticate, **settings)

    async def echo(request: Request, ws: WebsocketImplProtocol) -> None:
        ticket = getattr(request.ctx, "ticket", None)
        await _echo(ws, ticket.subject if ticket is not None else "anonymous")

    if variant == "public":
        echo = WSAuth.public(echo)
    app.add_websocket_route(echo, "/ws")


def _add_seed(app: Sanic[Any, Any], api_key: bytes) -> None:
    import redis.asyncio as redis_asyncio

    url = os.environ[REDIS_ENV]
    prefix = os.environ[PREFIX_ENV] + "seed:"

    @app.before_server_start
    async def connect(app: Sanic[Any, Any]) -> None:
        app.ctx.seed = RedisTicketCache(redis_asyncio.Redis.from_url(url), prefix=prefix)

    @app.after_server_stop
    async def disconnect(app: Sanic[Any, Any]) -> None:
        await app.ctx.seed._client.aclose()

    @app.on_request
    async def check_ticket(request: Request) -> HTTPResponse | None:
        route = request.route
        if route is None or not route.extra.websocket:
            return None
        token = request.args.get("token")
        if not token:
            return json_response({"error": "missing"}, status=401)
        try:
            subject = await app.ctx.seed.consume(token)
        except Exception:  # noqa: BLE001 - fail closed, as the seed did
            return json_response({"error": "store_unavailable"}, status=503)
        if subject is None:
            return json_response({"error": "unknown_ticket"}, status=401)
        request.ctx.subject = subject
        return None

    @app.post("/authenticate/token")
    async def token(request: Request) -> HTTPResponse:
        if not _authenticated(request, api_key):
            return json_response({"error": "unauthenticated"}, status=401)
        ticket = await app.ctx.seed.issue(SUBJECT)
        return json_response(
            {"token": ticket, "expires_in": SEED_TTL},
            headers={"Cache-Control": "no-store", "Pragma": "no-cache"},
        )

    async def echo(request: Request, ws: WebsocketImplProtocol) -> None:
        await _echo(ws, request.ctx.subject)

    app.add_websocket_route(echo, "/ws")


def create_app() -> Sanic[Any, Any]:
    """Build the app for the variant named in ``WSAUTH_BENCH_VARIANT``."""
    variant = os.environ.get(VARIANT_ENV, "")
    if variant not in VARIANTS:
        raise RuntimeError(f"{VARIANT_ENV} must be one of {', '.join(VARIANTS)}")
    app: Sanic[Any, Any] = Sanic(f"wsauth_bench_{variant}")
    app.config.WEBSOCKET_PING_INTERVAL = None
    app.config.KEEP_ALIVE_TIMEOUT = 75
    if os.environ.get(TIMEOUT_ENV):
        # Sanic keeps each connection's protocol (and everything it holds)
        # alive until its first timeout check, min(timeouts) / 2 after the
        # connection opened: 30 s by default, long after a short websocket
        # has closed. Shorter timeouts release them sooner.
        timeout = float(os.environ[TIMEOUT_ENV])
        app.config.REQUEST_TIMEOUT = timeout
        app.config.RESPONSE_TIMEOUT = timeout
        app.config.KEEP_ALIVE_TIMEOUT = timeout
    api_key = os.environ[API_KEY_ENV].encode()

    @app.get("/health")
    async def health(request: Request) -> HTTPResponse:
        return text("ok")

    if variant == "seed":
        _add_seed(app, api_key)
    else:
        _add_ours(app, variant, api_key)
    return app
