"""The ticket in ``Sec-WebSocket-Protocol``: taken, removed, never echoed."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from typing import Any

import pytest
from sanic import Request, Sanic

from sanic_wsauth import WSAuth

from ._raw import raw_upgrade
from ._support import Served, handshake, serve

PREFIX = "wsauth.ticket."


def _app(name: str, secret: str, **options: Any) -> tuple[Sanic[Any, Any], WSAuth]:
    app: Sanic[Any, Any] = Sanic(name)
    wsauth = WSAuth(app, secret_keys=secret, **options)

    async def report(request: Request, ws: Any) -> None:
        # What the handler sees: the offered header after the guard, and the
        # negotiated subprotocol.
        seen = {"offered": request.headers.getall("sec-websocket-protocol", [])}
        seen["negotiated"] = ws.subprotocol
        async for _ in ws:
            await ws.send(json.dumps(seen))

    app.add_websocket_route(report, "/chat", name="chat", subprotocols=["chat.v2", "chat.v1"])
    app.add_websocket_route(report, "/plain", name="plain")
    return app, wsauth


@pytest.fixture
async def server(secret: str, app_name: str) -> AsyncIterator[tuple[Served, WSAuth]]:
    app, wsauth = _app(app_name, secret)
    async with serve(app) as srv:
        yield srv, wsauth


def _no_ticket_in(headers: Mapping[str, str] | list[tuple[str, str]], token: str) -> None:
    items = headers.items() if isinstance(headers, Mapping) else headers
    for name, value in items:
        assert token[:12] not in value, name
        assert PREFIX not in value, name


@pytest.mark.parametrize("ticket_first", [True, False])
async def test_ticket_entry_beside_the_real_subprotocol(server: Any, ticket_first: bool) -> None:
    srv, wsauth = server
    token = wsauth.issue("a")
    offered = [PREFIX + token, "chat.v1"] if ticket_first else ["chat.v1", PREFIX + token]
    got = await handshake(f"{srv.ws}/chat", subprotocols=offered)
    assert got.status == 101
    assert got.subprotocol == "chat.v1"
    assert got.headers["sec-websocket-protocol"] == "chat.v1"
    _no_ticket_in(got.headers, token)
    assert got.reply is not None
    assert json.loads(got.reply) == {"offered": ["chat.v1"], "negotiated": "chat.v1"}


async def test_server_preference_still_applies(server: Any) -> None:
    srv, wsauth = server
    offered = ["chat.v1", PREFIX + wsauth.issue("a"), "chat.v2"]
    got = await handshake(f"{srv.ws}/chat", subprotocols=offered)
    assert got.status == 101 and got.subprotocol == "chat.v2"


async def test_route_without_subprotocols(server: Any) -> None:
    srv, wsauth = server
    token = wsauth.issue("a")
    got = await handshake(f"{srv.ws}/plain", subprotocols=[PREFIX + token])
    assert got.status == 101 and got.subprotocol is None
    assert "sec-websocket-protocol" not in got.headers
    assert got.reply is not None
    assert json.loads(got.reply) == {"offered": [], "negotiated": None}
    via_query = await handshake(f"{srv.ws}/plain?token={wsauth.issue('a')}")
    assert via_query.status == 101


async def test_query_ticket_with_a_real_subprotocol(server: Any) -> None:
    srv, wsauth = server
    got = await handshake(f"{srv.ws}/chat?token={wsauth.issue('a')}", subprotocols=["chat.v1"])
    assert got.status == 101 and got.subprotocol == "chat.v1"


async def test_two_ticket_entries_are_malformed(server: Any) -> None:
    srv, wsauth = server
    first, second = wsauth.issue("a"), wsauth.issue("a")
    refused = await handshake(
        f"{srv.ws}/chat", subprotocols=[PREFIX + first, PREFIX + second, "chat.v1"]
    )
    assert refused.status == 401 and json.loads(refused.body) == {"error": "malformed"}
    _no_ticket_in(refused.headers, first)
    _no_ticket_in(refused.headers, second)
    # Neither was consumed.
    for token in (first, second):
        ok = await handshake(f"{srv.ws}/chat", subprotocols=[PREFIX + token, "chat.v1"])
        assert ok.status == 101


async def test_ticket_in_both_places_is_malformed(server: Any) -> None:
    srv, wsauth = server
    token = wsauth.issue("a")
    refused = await handshake(f"{srv.ws}/chat?token={token}", subprotocols=[PREFIX + token])
    assert refused.status == 401 and json.loads(refused.body) == {"error": "malformed"}
    refused = await handshake(
        f"{srv.ws}/chat?token={wsauth.issue('a')}", subprotocols=[PREFIX + token, "chat.v1"]
    )
    assert refused.status == 401 and json.loads(refused.body) == {"error": "malformed"}


async def test_entries_across_header_lines(server: Any) -> None:
    srv, wsauth = server
    token = wsauth.issue("a")
    split = await raw_upgrade(
        srv.port,
        "/chat",
        [("Sec-WebSocket-Protocol", f"{PREFIX}{token}"), ("Sec-WebSocket-Protocol", "chat.v1")],
    )
    assert split.status == 101 and split.header("sec-websocket-protocol") == ["chat.v1"]
    _no_ticket_in(split.headers, token)
    doubled = await raw_upgrade(
        srv.port,
        "/chat",
        [
            ("Sec-WebSocket-Protocol", f"{PREFIX}{wsauth.issue('a')}, chat.v1"),
            ("Sec-WebSocket-Protocol", f"{PREFIX}{wsauth.issue('a')}"),
        ],
    )
    assert doubled.status == 401 and doubled.json() == {"error": "malformed"}


async def test_a_query_ticket_with_offers_across_header_lines(server: Any) -> None:
    """Sanic hands websockets only the first line's value (once per line): the
    guard joins the lines, so an offer on a later line is negotiated, and the
    ticket is not spent on a handshake websockets would then refuse."""
    srv, wsauth = server
    token = wsauth.issue("a")
    offered = [("Sec-WebSocket-Protocol", "other"), ("Sec-WebSocket-Protocol", "chat.v1")]
    split = await raw_upgrade(srv.port, f"/chat?token={token}", offered)
    assert split.status == 101 and split.header("sec-websocket-protocol") == ["chat.v1"]
    unknown = [("Sec-WebSocket-Protocol", "other"), ("Sec-WebSocket-Protocol", "x.v9")]
    refused = await raw_upgrade(srv.port, f"/chat?token={wsauth.issue('a')}", unknown)
    assert refused.status == 400 and refused.json() == {"error": "subprotocol_required"}


@pytest.mark.parametrize(
    ("entry", "reason"),
    [
        (PREFIX, "missing"),
        (PREFIX + "garbage", "malformed"),
        (PREFIX + "A" * 5000, "too_large"),
    ],
)
async def test_bad_entries(server: Any, entry: str, reason: str) -> None:
    srv, _ = server
    response = await raw_upgrade(
        srv.port, "/chat", [("Sec-WebSocket-Protocol", f"{entry}, chat.v1")]
    )
    assert response.status == 401 and response.json() == {"error": reason}


async def test_replayed_entry_is_refused_without_echo(server: Any) -> None:
    srv, wsauth = server
    token = wsauth.issue("a")
    offered = [PREFIX + token, "chat.v1"]
    assert (await handshake(f"{srv.ws}/chat", subprotocols=offered)).status == 101
    again = await handshake(f"{srv.ws}/chat", subprotocols=offered)
    assert again.status == 401 and json.loads(again.body) == {"error": "replayed"}
    _no_ticket_in(again.headers, token)
    assert token[:12].encode() not in again.body


async def test_custom_prefix(secret: str, app_name: str) -> None:
    app, wsauth = _app(app_name, secret, subprotocol_prefix="x-t.")
    async with serve(app) as srv:
        ok = await handshake(f"{srv.ws}/chat", subprotocols=["x-t." + wsauth.issue("a"), "chat.v1"])
        assert ok.status == 101 and ok.subprotocol == "chat.v1"
        # The default prefix is now just an unknown subprotocol: no ticket.
        refused = await handshake(
            f"{srv.ws}/chat", subprotocols=[PREFIX + wsauth.issue("a"), "chat.v1"]
        )
        assert refused.status == 401 and json.loads(refused.body) == {"error": "missing"}


async def test_only_the_ticket_offered_to_a_route_with_subprotocols(server: Any) -> None:
    """websockets would refuse a client that offers none of the route's subprotocols.

    The guard refuses it first, with 400 subprotocol_required, before the
    ticket is verified: the ticket is not spent and opens the route once the
    client offers the route's subprotocol.
    """
    srv, wsauth = server
    token = wsauth.issue("a")
    response = await raw_upgrade(srv.port, "/chat", [("Sec-WebSocket-Protocol", PREFIX + token)])
    assert response.status == 400
    assert json.loads(response.body) == {"error": "subprotocol_required"}
    _no_ticket_in(response.headers, token)
    assert token[:12].encode() not in response.body
    assert wsauth.counters["subprotocol_required"] == 1
    ok = await handshake(f"{srv.ws}/chat", subprotocols=[PREFIX + token, "chat.v1"])
    assert ok.status == 101 and ok.subprotocol == "chat.v1"
    # Another subprotocol than the route's is refused the same way.
    other = await handshake(f"{srv.ws}/chat", subprotocols=[PREFIX + wsauth.issue("a"), "x.v9"])
    assert other.status == 400
