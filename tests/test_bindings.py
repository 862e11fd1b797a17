"""Ticket bindings on a real server: audience (route/channel) and client IP."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import unquote

import pytest
from sanic import Request, Sanic

from sanic_wsauth import Identity, WSAuth
from sanic_wsauth.tokens import decode_unverified

from ._support import handshake, post_token, serve


def decode(token: str) -> dict[str, Any]:
    payload: dict[str, Any] = decode_unverified(token)[0]
    return payload


async def token_from(base: str, *, query: str = "", **kwargs: Any) -> tuple[int, dict[str, Any]]:
    status, body, _ = await asyncio.to_thread(
        post_token, base, path=f"/authenticate/token{query}", **kwargs
    )
    return status, body


# -- audience ----------------------------------------------------------------------------


def _audience_app(name: str, secret: str, **options: Any) -> tuple[Sanic[Any, Any], WSAuth]:
    app: Sanic[Any, Any] = Sanic(name)

    async def authorize(request: Request, identity: Identity, audience: str) -> bool:
        return audience != "/ws/admin" or identity.subject == "root"

    def authenticate(request: Request) -> str | None:
        return request.headers.get("x-user")

    wsauth = WSAuth(
        app, secret_keys=secret, authenticate=authenticate, authorize=authorize, **options
    )

    async def echo(request: Request, ws: Any) -> None:
        async for message in ws:
            await ws.send(f"{request.ctx.ticket.audience}: {message}")

    def room(request: Request) -> str:
        return f"room:{unquote(request.match_info['name'])}"

    def broken(request: Request) -> str:
        raise RuntimeError("audience bug")

    app.add_websocket_route(echo, "/ws/chat", name="chat")
    app.add_websocket_route(echo, "/ws/admin", name="admin")
    app.add_websocket_route(WSAuth.audience("lobby")(_copy(echo)), "/ws/lobby", name="lobby")
    app.add_websocket_route(WSAuth.audience(room)(_copy(echo)), "/ws/room/<name>", name="room")
    app.add_websocket_route(WSAuth.audience(broken)(_copy(echo)), "/ws/broken", name="broken")
    app.add_websocket_route(
        WSAuth.audience(lambda r: 42)(_copy(echo)),  # type: ignore[arg-type, return-value]
        "/ws/junk",
        name="junk",
    )
    return app, wsauth


def _copy(handler: Any) -> Any:
    async def wrapper(request: Request, ws: Any, **params: Any) -> None:
        await handler(request, ws)

    return wrapper


@pytest.fixture
async def aud_server(secret: str, app_name: str) -> AsyncIterator[Any]:
    app, wsauth = _audience_app(app_name, secret)
    async with serve(app) as srv:
        yield srv, wsauth


@pytest.mark.parametrize("carrier", ["query", "json", "form"])
async def test_endpoint_reads_the_audience(aud_server: Any, carrier: str) -> None:
    srv, _ = aud_server
    user = {"X-User": "alice"}
    if carrier == "query":
        status, body = await token_from(srv.http, query="?audience=/ws/chat", headers=user)
    elif carrier == "json":
        status, body = await token_from(
            srv.http,
            body=json.dumps({"audience": "/ws/chat"}).encode(),
            headers={**user, "Content-Type": "application/json"},
        )
    else:
        status, body = await token_from(
            srv.http,
            body=b"audience=%2Fws%2Fchat",
            headers={**user, "Content-Type": "application/x-www-form-urlencoded"},
        )
    assert status == 200
    assert decode(body["token"])["aud"] == "/ws/chat"
    ok = await handshake(f"{srv.ws}/ws/chat?token={body['token']}")
    assert ok.status == 101 and ok.reply == "/ws/chat: ping"


async def test_ticket_for_one_route_cannot_open_another(aud_server: Any) -> None:
    srv, _ = aud_server
    _, body = await token_from(srv.http, query="?audience=/ws/chat", headers={"X-User": "a"})
    refused = await handshake(f"{srv.ws}/ws/admin?token={body['token']}")
    assert refused.status == 403 and json.loads(refused.body) == {"error": "audience_mismatch"}
    # Not consumed by the refusal: still good where it belongs.
    assert (await handshake(f"{srv.ws}/ws/chat?token={body['token']}")).status == 101


async def test_authorize_refuses_an_audience(aud_server: Any) -> None:
    srv, wsauth = aud_server
    status, body = await token_from(srv.http, query="?audience=/ws/admin", headers={"X-User": "a"})
    assert (status, body) == (403, {"error": "audience_forbidden"})
    status, body = await token_from(
        srv.http, query="?audience=/ws/admin", headers={"X-User": "root"}
    )
    assert status == 200
    assert (await handshake(f"{srv.ws}/ws/admin?token={body['token']}")).status == 101


@pytest.mark.parametrize(
    "query",
    [
        "?audience=a&audience=b",
        "?audience=" + "x" * 300,
    ],
)
async def test_bad_audience_parameter(aud_server: Any, query: str) -> None:
    srv, _ = aud_server
    status, body = await token_from(srv.http, query=query, headers={"X-User": "a"})
    assert status == 400 and body == {"error": "bad_request"}


@pytest.mark.parametrize("payload", [b'{"audience": 5}', b'{"audience": ["a"]}', b"{nope"])
async def test_bad_audience_json(aud_server: Any, payload: bytes) -> None:
    srv, _ = aud_server
    status, body = await token_from(
        srv.http, body=payload, headers={"X-User": "a", "Content-Type": "application/json"}
    )
    assert status == 400 and body == {"error": "bad_request"}


async def test_non_ascii_audience_round_trips(aud_server: Any) -> None:
    srv, _ = aud_server
    status, body = await token_from(
        srv.http, query="?audience=room:%C3%A4", headers={"X-User": "a"}
    )
    assert status == 200 and decode(body["token"])["aud"] == "room:ä"
    ok = await handshake(f"{srv.ws}/ws/room/%C3%A4?token={body['token']}")
    assert ok.status == 101 and ok.reply == "room:ä: ping"


async def test_named_and_callable_audiences(aud_server: Any) -> None:
    srv, wsauth = aud_server
    lobby = wsauth.issue("a", audience="lobby")
    assert (await handshake(f"{srv.ws}/ws/lobby?token={lobby}")).status == 101
    wrong = wsauth.issue("a", audience="/ws/lobby")  # the path is not the audience here
    assert (await handshake(f"{srv.ws}/ws/lobby?token={wrong}")).status == 403
    blue = wsauth.issue("a", audience="room:blue")
    assert (await handshake(f"{srv.ws}/ws/room/red?token={blue}")).status == 403
    assert (await handshake(f"{srv.ws}/ws/room/blue?token={blue}")).status == 101


async def test_trailing_slash_is_the_same_audience(aud_server: Any) -> None:
    srv, _ = aud_server
    # authorize() refuses "/ws/admin"; "/ws/admin/" reaches the same handler
    # but a ticket for it is good nowhere.
    status, body = await token_from(srv.http, query="?audience=/ws/admin/", headers={"X-User": "a"})
    assert status == 200
    for path in ("/ws/admin/", "/ws/admin"):
        refused = await handshake(f"{srv.ws}{path}?token={body['token']}")
        assert refused.status == 403 and b"audience_mismatch" in refused.body
    _, body = await token_from(srv.http, query="?audience=/ws/chat", headers={"X-User": "a"})
    assert (await handshake(f"{srv.ws}/ws/chat/?token={body['token']}")).status == 101


async def test_unbound_ticket_opens_any_route(aud_server: Any) -> None:
    srv, wsauth = aud_server
    for path in ("/ws/chat", "/ws/admin", "/ws/lobby"):
        assert (await handshake(f"{srv.ws}{path}?token={wsauth.issue('a')}")).status == 101


@pytest.mark.parametrize("path", ["/ws/broken", "/ws/junk"])
async def test_failing_audience_callable_is_a_403(
    aud_server: Any, path: str, caplog: pytest.LogCaptureFixture
) -> None:
    srv, wsauth = aud_server
    token = wsauth.issue("a")
    with caplog.at_level(logging.ERROR, logger="sanic_wsauth"):
        refused = await handshake(f"{srv.ws}{path}?token={token}")
    assert refused.status == 403 and json.loads(refused.body) == {"error": "audience_mismatch"}
    assert any("audience callable" in r.getMessage() for r in caplog.records)
    assert token[:20] not in caplog.text
    assert wsauth.counters["audience_mismatch"] == 1


async def test_require_audience(secret: str, app_name: str) -> None:
    app, wsauth = _audience_app(app_name, secret, require_audience=True)
    async with serve(app) as srv:
        refused = await handshake(f"{srv.ws}/ws/chat?token={wsauth.issue('a')}")
        assert refused.status == 403 and b"audience_mismatch" in refused.body
        bound = wsauth.issue("a", audience="/ws/chat")
        assert (await handshake(f"{srv.ws}/ws/chat?token={bound}")).status == 101


# -- IP ----------------------------------------------------------------------------------


def _ip_app(name: str, secret: str) -> tuple[Sanic[Any, Any], WSAuth]:
    app: Sanic[Any, Any] = Sanic(name)
    wsauth = WSAuth(app, secret_keys=secret, authenticate=lambda r: "alice", bind_ip=True)

    @app.websocket("/ws")
    async def echo(request: Request, ws: Any) -> None:
        async for message in ws:
            await ws.send(f"{request.ctx.ticket.client_ip}: {message}")

    return app, wsauth


async def test_ipv4_binding(secret: str, app_name: str) -> None:
    app, wsauth = _ip_app(app_name, secret)
    async with serve(app) as srv:
        status, body = await token_from(srv.http)
        assert status == 200 and decode(body["token"])["ip"] == "127.0.0.1"
        ok = await handshake(f"{srv.ws}/ws?token={body['token']}")
        assert ok.status == 101 and ok.reply == "127.0.0.1: ping"
        for other in ("127.0.0.2", "10.0.0.1", "::1"):
            refused = await handshake(f"{srv.ws}/ws?token={wsauth.issue('a', client_ip=other)}")
            assert refused.status == 403 and json.loads(refused.body) == {"error": "ip_mismatch"}
        mapped = wsauth.issue("a", client_ip="::ffff:127.0.0.1")  # normalised to IPv4
        assert (await handshake(f"{srv.ws}/ws?token={mapped}")).status == 101


class _CountingRequest(Request):
    """Counts the reads of ``client_ip`` (proxy headers parsed) per app."""

    reads: dict[str, int] = {}

    @property
    def client_ip(self) -> str:
        _CountingRequest.reads[self.app.name] = _CountingRequest.reads.get(self.app.name, 0) + 1
        return super().client_ip


async def test_address_is_looked_up_only_for_a_bound_ticket(secret: str, app_name: str) -> None:
    app: Sanic[Any, Any] = Sanic(app_name, request_class=_CountingRequest)
    wsauth = WSAuth(app, secret_keys=secret)

    @app.websocket("/ws")
    async def echo(request: Request, ws: Any) -> None:
        async for message in ws:
            await ws.send(f"{request.ctx.ticket.subject}: {message}")

    reads = _CountingRequest.reads
    async with serve(app) as srv:
        unbound = await handshake(f"{srv.ws}/ws?token={wsauth.issue('a')}")
        assert unbound.status == 101 and unbound.reply == "a: ping"
        sanic_own = reads.get(app_name, 0)  # Sanic's handshake reads it too (to log it)
        bound = await handshake(f"{srv.ws}/ws?token={wsauth.issue('b', client_ip='127.0.0.1')}")
        assert bound.status == 101 and bound.reply == "b: ping"
        assert reads[app_name] == 2 * sanic_own + 1  # one read more: the guard's
        elsewhere = await handshake(f"{srv.ws}/ws?token={wsauth.issue('c', client_ip='10.0.0.1')}")
        assert elsewhere.status == 403 and json.loads(elsewhere.body) == {"error": "ip_mismatch"}
        assert reads[app_name] == 2 * sanic_own + 2  # refused before Sanic's handshake


async def test_ipv6_binding(secret: str, app_name: str) -> None:
    app, wsauth = _ip_app(app_name, secret)
    async with serve(app, host="::1") as srv:
        status, body = await token_from(srv.http)
        assert status == 200 and decode(body["token"])["ip"] == "::1"
        ok = await handshake(f"{srv.ws}/ws?token={body['token']}")
        assert ok.status == 101 and ok.reply == "::1: ping"
        spelled = wsauth.issue("a", client_ip="0:0:0:0:0:0:0:1")
        assert (await handshake(f"{srv.ws}/ws?token={spelled}")).status == 101
        v4 = wsauth.issue("a", client_ip="127.0.0.1")
        refused = await handshake(f"{srv.ws}/ws?token={v4}")
        assert refused.status == 403 and b"ip_mismatch" in refused.body


async def test_forwarded_for_is_ignored_without_proxy_settings(secret: str, app_name: str) -> None:
    app, _ = _ip_app(app_name, secret)
    async with serve(app) as srv:
        spoof = {"X-Forwarded-For": "203.0.113.5", "X-Real-IP": "203.0.113.5"}
        _, body = await token_from(srv.http, headers=spoof)
        assert decode(body["token"])["ip"] == "127.0.0.1"
        other = {"X-Forwarded-For": "198.51.100.1"}
        assert (await handshake(f"{srv.ws}/ws?token={body['token']}", headers=other)).status == 101


@pytest.mark.parametrize(
    ("settings", "at_issue", "same", "other", "bound"),
    [
        (
            {"PROXIES_COUNT": 1},
            {"X-Forwarded-For": "203.0.113.5"},
            {"X-Forwarded-For": "203.0.113.5"},
            {"X-Forwarded-For": "203.0.113.6"},
            "203.0.113.5",
        ),
        (
            {"PROXIES_COUNT": 1},
            {"X-Forwarded-For": "2001:DB8:0:0::7"},
            {"X-Forwarded-For": "2001:db8::7"},
            {"X-Forwarded-For": "2001:db8::8"},
            "2001:db8::7",
        ),
        (
            {"REAL_IP_HEADER": "x-real-ip", "PROXIES_COUNT": 1},
            {"X-Real-IP": "198.51.100.20"},
            {"X-Real-IP": "198.51.100.20"},
            {"X-Real-IP": "198.51.100.21"},
            "198.51.100.20",
        ),
        (
            {"FORWARDED_SECRET": "proxy-s3cret"},
            {"Forwarded": 'for="[2001:db8::9]";secret=proxy-s3cret'},
            {"Forwarded": 'for="[2001:db8::9]";secret=proxy-s3cret'},
            {"Forwarded": 'for="[2001:db8::a]";secret=proxy-s3cret'},
            "2001:db8::9",
        ),
    ],
)
async def test_binding_behind_a_proxy(
    secret: str,
    app_name: str,
    settings: dict[str, Any],
    at_issue: dict[str, str],
    same: dict[str, str],
    other: dict[str, str],
    bound: str,
) -> None:
    app, _ = _ip_app(app_name, secret)
    app.config.update(settings)
    async with serve(app) as srv:
        status, body = await token_from(srv.http, headers=at_issue)
        assert status == 200 and decode(body["token"])["ip"] == bound
        refused = await handshake(f"{srv.ws}/ws?token={body['token']}", headers=other)
        assert refused.status == 403 and b"ip_mismatch" in refused.body
        direct = await handshake(f"{srv.ws}/ws?token={body['token']}")
        assert direct.status == 403
        ok = await handshake(f"{srv.ws}/ws?token={body['token']}", headers=same)
        assert ok.status == 101 and ok.reply == f"{bound}: ping"


async def test_unusable_forwarded_address(secret: str, app_name: str) -> None:
    app, wsauth = _ip_app(app_name, secret)
    app.config.PROXIES_COUNT = 1
    async with serve(app) as srv:
        junk = {"X-Forwarded-For": "not-an-address"}
        status, body = await token_from(srv.http, headers=junk)
        # Sanic takes the forwarded value as the client address: it is not an
        # IP, so no ticket is issued (400) and none can be used (403).
        assert (status, body) == (400, {"error": "no_client_ip"})
        token = wsauth.issue("a", client_ip="127.0.0.1")
        refused = await handshake(f"{srv.ws}/ws?token={token}", headers=junk)
        assert refused.status == 403 and json.loads(refused.body) == {"error": "ip_mismatch"}
