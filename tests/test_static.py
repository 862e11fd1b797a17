"""The browser client served by the extension at ``WSAUTH_STATIC_PATH``."""

from __future__ import annotations

import asyncio
import hashlib
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from sanic import Request, Sanic

import sanic_wsauth
from sanic_wsauth import WSAuth
from sanic_wsauth.exceptions import ConfigurationError
from sanic_wsauth.ext.static import CONTENT_TYPE, client_source

from ._support import handshake, serve

PACKAGED = Path(sanic_wsauth.__file__).parent / "static" / "wsauth.js"


def build_app(name: str, secret: str, **options: Any) -> Sanic[Any, Any]:
    app: Sanic[Any, Any] = Sanic(name)
    WSAuth(app, secret_keys=secret, authenticate=lambda request: "alice", **options)

    @app.websocket("/ws")  # type: ignore[untyped-decorator]
    async def echo(request: Request, ws: Any) -> None:
        async for message in ws:
            await ws.send(f"{request.ctx.ticket.subject}: {message}")

    return app


def fetch(
    url: str, *, method: str = "GET", headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, method=method, headers=headers or {})  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return (
                response.status,
                {k.lower(): v for k, v in response.headers.items()},
                (response.read()),
            )
    except urllib.error.HTTPError as exc:
        return exc.code, {k.lower(): v for k, v in exc.headers.items()}, exc.read()


async def get(url: str, **kwargs: Any) -> tuple[int, dict[str, str], bytes]:
    return await asyncio.to_thread(fetch, url, **kwargs)


def test_packaged_client_is_the_file_in_the_source_tree() -> None:
    body = client_source()
    assert body == PACKAGED.read_bytes()
    assert b"export function connect(" in body


async def test_served_with_javascript_type_and_exact_bytes(secret: str, app_name: str) -> None:
    app = build_app(app_name, secret, static_path="/static/wsauth.js")
    async with serve(app) as srv:
        status, headers, body = await get(f"{srv.http}/static/wsauth.js")
    assert status == 200
    assert headers["content-type"] == "text/javascript; charset=utf-8" == CONTENT_TYPE
    assert body == PACKAGED.read_bytes()
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["cache-control"] == "public, max-age=300"
    assert headers["etag"] == f'"{hashlib.sha256(body).hexdigest()[:32]}"'


async def test_etag_revalidation_and_head(secret: str, app_name: str) -> None:
    app = build_app(app_name, secret, static_path="/js/wsauth.js")
    async with serve(app) as srv:
        url = f"{srv.http}/js/wsauth.js"
        _, first, _ = await get(url)
        etag = first["etag"]
        status, headers, body = await get(url, headers={"If-None-Match": etag})
        assert (status, body, headers["etag"]) == (304, b"", etag)
        status, _, _ = await get(url, headers={"If-None-Match": f'"other", W/{etag}'})
        assert status == 304
        status, _, body = await get(url, headers={"If-None-Match": '"stale"'})
        assert status == 200 and body == PACKAGED.read_bytes()
        status, headers, body = await get(url, method="HEAD")
        assert (status, body) == (200, b"")
        assert headers["content-type"] == CONTENT_TYPE
        status, _, _ = await get(url, method="POST")
        assert status == 405


async def test_not_served_by_default(secret: str, app_name: str) -> None:
    app = build_app(app_name, secret)
    async with serve(app) as srv:
        for path in ("/static/wsauth.js", "/wsauth.js"):
            status, _, body = await get(f"{srv.http}{path}")
            assert status == 404
            assert b"export function connect" not in body


async def test_app_config_path_wins_and_guard_is_untouched(secret: str, app_name: str) -> None:
    app: Sanic[Any, Any] = Sanic(app_name)
    app.config.WSAUTH_STATIC_PATH = "/assets/client.js"
    WSAuth(app, secret_keys=secret, authenticate=lambda r: "alice", static_path="/ignored.js")

    @app.websocket("/ws")  # type: ignore[untyped-decorator]
    async def echo(request: Request, ws: Any) -> None:
        async for message in ws:
            await ws.send(f"{request.ctx.ticket.subject}: {message}")

    async with serve(app) as srv:
        assert (await get(f"{srv.http}/assets/client.js"))[0] == 200
        assert (await get(f"{srv.http}/ignored.js"))[0] == 404
        # Serving the client changes nothing for websockets: still a ticket each.
        assert (await handshake(f"{srv.ws}/ws")).status == 401
        token = srv.app.ctx.wsauth.issue("alice")
        assert (await handshake(f"{srv.ws}/ws?token={token}")).reply == "alice: ping"


@pytest.mark.parametrize("path", ["wsauth.js", 42])
def test_a_path_must_start_with_a_slash(secret: str, app_name: str, path: object) -> None:
    with pytest.raises(ConfigurationError, match="WSAUTH_STATIC_PATH"):
        WSAuth(Sanic(app_name), secret_keys=secret, static_path=path)
