"""The demo app: a ticket endpoint behind an API key, and an echo socket.

Contract (documented in the README, relied on by tests and benchmarks):

- ``POST /authenticate/token`` with ``Authorization: Bearer <key>``, the key
  from env ``WSAUTH_DEMO_API_KEY``: 200 ``{"token", "expires_in"}``, or 401.
- ``GET /ws?token=...`` (websocket): echoes each message as
  ``"<subject>: <message>"``; the demo's subject is ``demo``.
- ``GET /health``: 200 ``ok`` (for readiness checks).
- ``GET /``: the demo page (enter the API key, connect, send, see echoes); it
  loads the browser client that the extension serves at ``/static/wsauth.js``.
- ``GET /ws/sub`` (websocket): the same echo on a route that negotiates the
  app subprotocol ``wsauth.demo``, which clients must offer (beside the ticket
  entry, for the ``Sec-WebSocket-Protocol`` transport). A browser that offers
  protocols fails the handshake unless the server selects one, and a route
  with subprotocols refuses clients that offer none: hence two paths.
- The secret comes from env ``WSAUTH_SECRET``; ``WSAUTH_REDIS_URL`` selects the
  Redis replay store; ``WSAUTH_MAX_AGE`` the ticket lifetime.
"""

from __future__ import annotations

import hmac
import json
import os
import secrets
from importlib import resources
from typing import Any

from sanic import Request, Sanic
from sanic.response import HTTPResponse, html, text
from sanic.server.websockets.impl import WebsocketImplProtocol

from .exceptions import ConfigurationError
from .ext import WSAuth
from .ext.config import WSAuthConfig
from .tokens import Ticket, comparable_bytes

__all__ = ["APP_NAME", "DEMO_SUBJECT", "create_app"]

APP_NAME = "sanic_wsauth_demo"
DEMO_SUBJECT = "demo"
API_KEY_ENV = "WSAUTH_DEMO_API_KEY"
#: The app subprotocol of ``/ws/sub`` (offered beside the ticket entry).
DEMO_SUBPROTOCOL = "wsauth.demo"
#: The echo route that negotiates :data:`DEMO_SUBPROTOCOL`.
SUBPROTOCOL_PATH = "/ws/sub"
#: Where the demo serves the browser client (``WSAUTH_STATIC_PATH`` wins).
CLIENT_PATH = "/static/wsauth.js"


def _bearer(request: Request) -> str:
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    return credentials.strip() if scheme.lower() == "bearer" else ""


def _demo_page(template: str, config: WSAuthConfig) -> HTTPResponse:
    nonce = secrets.token_urlsafe(16)
    settings = {
        "module": config.static_path,
        "tokenUrl": config.token_path,
        "wsPath": "/ws",
        "subprotocolPath": SUBPROTOCOL_PATH,
        "subprotocol": DEMO_SUBPROTOCOL,
    }
    # Inside <script>: "<" escaped so a value can never close the element.
    data = json.dumps(settings).replace("<", "\\u003c")
    policy = (
        f"default-src 'none'; script-src 'self' 'nonce-{nonce}'; style-src 'nonce-{nonce}'; "
        "connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'"
    )
    return html(
        template.replace("__DEMO_CONFIG__", data).replace("__NONCE__", nonce),
        headers={
            "Content-Security-Policy": policy,
            "Cache-Control": "no-store",
            "Referrer-Policy": "no-referrer",
            "X-Content-Type-Options": "nosniff",
        },
    )


def create_app() -> Sanic[Any, Any]:
    """Build the demo app from the environment (a factory, so workers re-import it)."""
    api_key = os.environ.get(API_KEY_ENV, "")
    if not api_key:
        raise RuntimeError(f"{API_KEY_ENV} is not set; run the demo with `sanic-wsauth demo`")
    app: Sanic[Any, Any] = Sanic(APP_NAME)
    app.config.WEBSOCKET_PING_INTERVAL = None
    settings: dict[str, Any] = {"static_path": CLIENT_PATH}
    if os.environ.get("WSAUTH_SECRET"):
        settings["secret_keys"] = os.environ["WSAUTH_SECRET"]
    if os.environ.get("WSAUTH_REDIS_URL"):
        settings["redis_url"] = os.environ["WSAUTH_REDIS_URL"]
    if os.environ.get("WSAUTH_MAX_AGE"):
        try:
            settings["max_age"] = int(os.environ["WSAUTH_MAX_AGE"])
        except ValueError:
            raise ConfigurationError("WSAUTH_MAX_AGE must be a whole number of seconds") from None

    def authenticate(request: Request) -> str | None:
        # Sanic keeps a header's undecodable bytes as lone surrogates.
        presented = comparable_bytes(_bearer(request))
        return DEMO_SUBJECT if hmac.compare_digest(presented, api_key.encode()) else None

    WSAuth(app, authenticate=authenticate, **settings)

    @app.get("/health")
    async def health(request: Request) -> HTTPResponse:
        return text("ok")

    page = resources.files(__package__).joinpath("static").joinpath("demo.html").read_text("utf-8")

    @app.get("/")
    async def index(request: Request) -> HTTPResponse:
        return _demo_page(page, request.app.ctx.wsauth.config)

    @app.websocket("/ws")  # type: ignore[untyped-decorator]  # Sanic is untyped here
    async def echo(request: Request, ws: WebsocketImplProtocol) -> None:
        ticket: Ticket = request.ctx.ticket
        async for message in ws:
            body = message if isinstance(message, str) else message.decode("utf-8", "replace")
            await ws.send(f"{ticket.subject}: {body}")

    # A route with subprotocols refuses clients that offer none (websockets'
    # "missing subprotocol"), so the subprotocol flavour has its own path.
    app.add_websocket_route(
        echo, SUBPROTOCOL_PATH, subprotocols=[DEMO_SUBPROTOCOL], name="echo_sub"
    )
    return app
