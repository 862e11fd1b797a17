"""The demo app: a ticket endpoint behind an API key, and an echo socket.

Contract (documented in the README, relied on by tests and benchmarks):

- ``POST /authenticate/token`` with ``Authorization: Bearer <key>``, the key
  from env ``WSAUTH_DEMO_API_KEY``: 200 ``{"token", "expires_in"}``, or 401.
- ``GET /ws?token=...`` (websocket): echoes each message as
  ``"<subject>: <message>"``; the demo's subject is ``demo``.
- ``GET /health``: 200 ``ok`` (for readiness checks).
- The secret comes from env ``WSAUTH_SECRET``; ``WSAUTH_REDIS_URL`` selects the
  Redis replay store; ``WSAUTH_MAX_AGE`` the ticket lifetime.
"""

from __future__ import annotations

import hmac
import os
from typing import Any

from sanic import Request, Sanic
from sanic.response import HTTPResponse, text
from sanic.server.websockets.impl import WebsocketImplProtocol

from .ext import WSAuth
from .tokens import Ticket

__all__ = ["APP_NAME", "DEMO_SUBJECT", "create_app"]

APP_NAME = "sanic_wsauth_demo"
DEMO_SUBJECT = "demo"
API_KEY_ENV = "WSAUTH_DEMO_API_KEY"


def _bearer(request: Request) -> str:
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    return credentials.strip() if scheme.lower() == "bearer" else ""


def create_app() -> Sanic[Any, Any]:
    """Build the demo app from the environment (a factory, so workers re-import it)."""
    api_key = os.environ.get(API_KEY_ENV, "")
    if not api_key:
        raise RuntimeError(f"{API_KEY_ENV} is not set; run the demo with `sanic-wsauth demo`")
    app: Sanic[Any, Any] = Sanic(APP_NAME)
    app.config.WEBSOCKET_PING_INTERVAL = None
    settings: dict[str, Any] = {}
    if os.environ.get("WSAUTH_SECRET"):
        settings["secret_keys"] = os.environ["WSAUTH_SECRET"]
    if os.environ.get("WSAUTH_REDIS_URL"):
        settings["redis_url"] = os.environ["WSAUTH_REDIS_URL"]
    if os.environ.get("WSAUTH_MAX_AGE"):
        settings["max_age"] = int(os.environ["WSAUTH_MAX_AGE"])

    def authenticate(request: Request) -> str | None:
        presented = _bearer(request).encode()
        return DEMO_SUBJECT if hmac.compare_digest(presented, api_key.encode()) else None

    WSAuth(app, authenticate=authenticate, **settings)

    @app.get("/health")
    async def health(request: Request) -> HTTPResponse:
        return text("ok")

    @app.websocket("/ws")
    async def echo(request: Request, ws: WebsocketImplProtocol) -> None:
        ticket: Ticket = request.ctx.ticket
        async for message in ws:
            body = message if isinstance(message, str) else message.decode("utf-8", "replace")
            await ws.send(f"{ticket.subject}: {body}")

    return app
