"""An app configured only from the environment, run by the start-up tests via `sanic`."""

from __future__ import annotations

from typing import Any

from sanic import Request, Sanic
from sanic.response import HTTPResponse, text

from sanic_wsauth import WSAuth


def create_app() -> Sanic[Any, Any]:
    app: Sanic[Any, Any] = Sanic("wsauth_configured")
    WSAuth(app, authenticate=lambda request: "env-user")

    @app.get("/health")
    async def health(request: Request) -> HTTPResponse:
        return text("ok")

    return app
