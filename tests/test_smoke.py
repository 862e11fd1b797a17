from __future__ import annotations

from typing import Any

from sanic import Request, Sanic

from sanic_wsauth import WSAuth

from ._support import handshake, post_token, serve


async def test_smoke(secret: str, app_name: str) -> None:
    app: Sanic[Any, Any] = Sanic(app_name)
    WSAuth(app, secret_keys=secret, authenticate=lambda r: "alice")

    @app.websocket("/ws")
    async def ws_handler(request: Request, ws: Any) -> None:
        async for msg in ws:
            await ws.send(f"{request.ctx.ticket.subject}: {msg}")

    async with serve(app) as srv:
        import asyncio

        status, body, _ = await asyncio.to_thread(post_token, srv.http)
        assert status == 200
        ok = await handshake(f"{srv.ws}/ws?token={body['token']}")
        assert ok.status == 101 and ok.reply == "alice: ping"
        again = await handshake(f"{srv.ws}/ws?token={body['token']}")
        assert again.status == 401 and b"replayed" in again.body
