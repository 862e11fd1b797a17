"""The handshake guard against a real Sanic server and the real websockets client."""

from __future__ import annotations

import asyncio
import gc
import json
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import quote

import pytest
from sanic import Request, Sanic
from sanic.response import text

from sanic_wsauth import MemoryReplayStore, ReplayStore, TicketIssuer, WSAuth
from sanic_wsauth.exceptions import StoreUnavailable

from ._raw import raw_upgrade
from ._support import Handshake, Served, handshake, new_secret, serve

NOW_OFFSETS = {"expired": -40, "future": +60}


def build_app(name: str, secret: Any, **options: Any) -> Sanic[Any, Any]:
    app: Sanic[Any, Any] = Sanic(name)
    WSAuth(app, secret_keys=secret, authenticate=lambda request: "alice", **options)

    @app.websocket("/ws")
    async def echo(request: Request, ws: Any) -> None:
        ticket = request.ctx.ticket
        async for message in ws:
            await ws.send(f"{ticket.subject}: {message}")

    @app.websocket("/open")
    @WSAuth.public
    async def open_socket(request: Request, ws: Any) -> None:
        async for message in ws:
            await ws.send(f"public: {message}")

    @app.get("/plain")
    async def plain(request: Request) -> Any:
        return text("plain")

    return app


@pytest.fixture
async def served(app_name: str, secret: str) -> AsyncIterator[Served]:
    async with serve(build_app(app_name, secret)) as srv:
        yield srv


def wsauth(srv: Served) -> WSAuth:
    ext: WSAuth = srv.app.ctx.wsauth
    return ext


def assert_refused(result: Handshake, status: int, reason: str) -> None:
    assert result.status == status, result
    assert result.reply is None
    assert json.loads(result.body) == {"error": reason}
    assert result.headers.get("cache-control") == "no-store"
    if status == 401:
        assert "www-authenticate" in result.headers


async def test_valid_ticket_upgrades_and_handler_sees_subject(served: Served) -> None:
    token = wsauth(served).issue("bob")
    result = await handshake(f"{served.ws}/ws?token={token}")
    assert result.status == 101
    assert result.reply == "bob: ping"
    assert wsauth(served).counters["accepted"] == 1


async def test_second_use_of_a_ticket_is_refused(served: Served) -> None:
    token = wsauth(served).issue("bob")
    assert (await handshake(f"{served.ws}/ws?token={token}")).status == 101
    assert_refused(await handshake(f"{served.ws}/ws?token={token}"), 401, "replayed")


async def test_missing_ticket(served: Served) -> None:
    assert_refused(await handshake(f"{served.ws}/ws"), 401, "missing")
    assert_refused(await handshake(f"{served.ws}/ws?token="), 401, "missing")


def _mutations(token: str, secret: str) -> dict[str, tuple[str, int, str]]:
    value, _, signature = token.rpartition(".")
    flipped = signature[:10] + ("A" if signature[10] != "A" else "B") + signature[11:]
    return {
        "tampered": (f"{value}.{flipped}", 401, "bad_signature"),
        "tampered_payload": ("eyJ" + token[4:], 401, "bad_signature"),
        "truncated": (token[:-5], 401, "bad_signature"),
        "truncated_to_two_segments": (value, 401, "malformed"),
        "garbage": ("not a ticket at all", 401, "malformed"),
        "unicode": ("ticket\u00e9.\u2603.x", 401, "malformed"),
        "oversized": ("a" * 5000, 401, "too_large"),
        "wrong_salt": (TicketIssuer(secret, salt="other").issue("x"), 401, "bad_signature"),
        "wrong_key": (TicketIssuer(new_secret()).issue("x"), 401, "bad_signature"),
    }


@pytest.mark.parametrize(
    "case",
    [
        "tampered",
        "tampered_payload",
        "truncated",
        "truncated_to_two_segments",
        "garbage",
        "unicode",
        "oversized",
        "wrong_salt",
        "wrong_key",
    ],
)
async def test_bad_tickets_are_refused_without_upgrade(
    served: Served, secret: str, case: str
) -> None:
    token = wsauth(served).issue("bob")
    bad, status, reason = _mutations(token, secret)[case]
    assert_refused(await handshake(f"{served.ws}/ws?token={quote(bad)}"), status, reason)
    assert wsauth(served).counters[reason] == 1
    assert "accepted" not in wsauth(served).counters


@pytest.mark.parametrize(("case", "reason"), [("expired", "expired"), ("future", "not_yet_valid")])
async def test_expired_and_future_tickets(
    served: Served, secret: str, case: str, reason: str
) -> None:
    import time

    offset = NOW_OFFSETS[case]
    token = TicketIssuer(secret, clock=lambda: time.time() + offset).issue("bob")
    assert_refused(await handshake(f"{served.ws}/ws?token={token}"), 401, reason)


async def test_ticket_slightly_in_the_future_is_within_leeway(served: Served, secret: str) -> None:
    import time

    token = TicketIssuer(secret, clock=lambda: time.time() + 3).issue("bob")
    assert (await handshake(f"{served.ws}/ws?token={token}")).status == 101


async def test_a_refused_ticket_does_not_consume_its_replay_entry(served: Served) -> None:
    ext = wsauth(served)
    token = ext.issue("bob", audience="/ws")
    other = ext.issue("bob", audience="/elsewhere")
    assert_refused(await handshake(f"{served.ws}/ws?token={other}"), 403, "audience_mismatch")
    assert len(ext.store) == 0  # type: ignore[arg-type]
    assert (await handshake(f"{served.ws}/ws?token={token}")).status == 101
    assert len(ext.store) == 1  # type: ignore[arg-type]


async def test_forged_tickets_never_reach_the_store(served: Served, secret: str) -> None:
    ext = wsauth(served)
    token = ext.issue("bob")
    for bad, _, _ in _mutations(token, secret).values():
        await handshake(f"{served.ws}/ws?token={quote(bad)}")
    assert len(ext.store) == 0  # type: ignore[arg-type]


async def test_two_tickets_in_the_query_string_are_refused(served: Served) -> None:
    ext = wsauth(served)
    first, second = ext.issue("a"), ext.issue("b")
    result = await handshake(f"{served.ws}/ws?token={first}&token={second}")
    assert_refused(result, 401, "malformed")


async def test_public_routes_and_plain_http_need_no_ticket(served: Served) -> None:
    result = await handshake(f"{served.ws}/open")
    assert result.status == 101 and result.reply == "public: ping"
    import urllib.request

    def fetch() -> bytes:
        with urllib.request.urlopen(f"{served.http}/plain", timeout=5) as response:  # noqa: S310
            body: bytes = response.read()
            return body

    assert await asyncio.to_thread(fetch) == b"plain"


async def test_rotation_accepts_old_and_new_keys(app_name: str) -> None:
    old, new = new_secret(), new_secret()
    async with serve(build_app(app_name, [old, new])) as srv:
        ext = wsauth(srv)
        old_ticket = TicketIssuer(old).issue("x")
        assert (await handshake(f"{srv.ws}/ws?token={old_ticket}")).status == 101
        minted = ext.issue("y")
        from sanic_wsauth import TicketVerifier

        TicketVerifier(new).verify(minted)  # the newest key signs
        assert (await handshake(f"{srv.ws}/ws?token={minted}")).status == 101


async def test_verify_only_secrets(app_name: str) -> None:
    current, upcoming = new_secret(), new_secret()
    app = build_app(app_name, current, verify_secrets=[upcoming])
    async with serve(app) as srv:
        ext = wsauth(srv)
        early = TicketIssuer(upcoming).issue("x")  # a host that already switched
        assert (await handshake(f"{srv.ws}/ws?token={early}")).status == 101
        from sanic_wsauth import BadSignature, TicketVerifier

        with pytest.raises(BadSignature):
            TicketVerifier(upcoming).verify(ext.issue("y"))  # we still sign with current


async def test_full_store_fails_closed_with_503(app_name: str, secret: str) -> None:
    store = MemoryReplayStore(max_entries=1)
    app = build_app(app_name, secret, store=store)
    async with serve(app) as srv:
        ext = wsauth(srv)
        assert (await handshake(f"{srv.ws}/ws?token={ext.issue('a')}")).status == 101
        assert_refused(
            await handshake(f"{srv.ws}/ws?token={ext.issue('b')}"), 503, "store_unavailable"
        )


class _BrokenStore(ReplayStore):
    """A store whose backend raises a driver error: the one fault not reproducible here
    without a real backend (Redis outages are tested for real in the Redis suite)."""

    def __init__(self, error: Callable[[], Exception]) -> None:
        self.error = error

    async def claim(self, jti: str, expires_at: float) -> bool:
        raise self.error()

    async def close(self) -> None:
        return None


@pytest.mark.parametrize("error", [ConnectionError, TimeoutError, RuntimeError])
async def test_any_store_fault_fails_closed(
    app_name: str, secret: str, error: Callable[[], Exception]
) -> None:
    app = build_app(app_name, secret, store=_BrokenStore(error))
    async with serve(app) as srv:
        result = await handshake(f"{srv.ws}/ws?token={wsauth(srv).issue('a')}")
        assert_refused(result, 503, "store_unavailable")


async def test_ticket_in_subprotocol_opens_socket(served: Served) -> None:
    token = wsauth(served).issue("carol")
    result = await handshake(f"{served.ws}/ws", subprotocols=[f"wsauth.ticket.{token}"])
    # The route offers no subprotocol and the ticket entry was removed: none is selected.
    assert result.status == 101 and result.reply == "carol: ping"
    assert result.subprotocol is None
    assert token not in json.dumps(result.headers)


async def _raw(port: int, method: str, target: str) -> bytes:
    """A websocket upgrade request with any method; what came back, up to EOF or 2 s."""
    import base64
    import os

    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    key = base64.b64encode(os.urandom(16)).decode()
    head = (
        f"{method} {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    writer.write(head.encode())
    received = b""
    try:
        while chunk := await asyncio.wait_for(reader.read(4096), 2):
            received += chunk
    except TimeoutError:
        pass
    finally:
        writer.close()
    return received


async def test_a_plain_route_that_wraps_a_websocket_handler_is_guarded(
    app_name: str, secret: str
) -> None:
    """sanic-ext adds a HEAD route for every GET route, websocket routes included,
    wrapping the websocket handler in a plain HTTP route; that route performs
    the handshake too, so an upgrade request to it needs a ticket."""
    import functools

    app = build_app(app_name, secret)

    async def feed(request: Request, ws: Any) -> None:
        await ws.send(f"feed for {getattr(request.ctx, 'ticket', None)}")

    app.add_websocket_route(feed, "/feed")
    # What sanic-ext's http_auto_head registers: the websocket wrapper, as HTTP.
    wrapped = functools.partial(app._websocket_handler, feed, subprotocols=None)
    app.add_route(wrapped, "/feed", methods=["HEAD"], name="feed_head")
    async with serve(app) as srv:
        refused = await _raw(srv.port, "HEAD", "/feed")
        assert refused.startswith(b"HTTP/1.1 401"), refused[:200]
        assert b"feed for" not in refused
        token = wsauth(srv).issue("carol")
        accepted = await _raw(srv.port, "HEAD", f"/feed?token={token}")
        assert accepted.startswith(b"HTTP/1.1 101"), accepted[:200]
        assert b"feed for Ticket(" in accepted and b"carol" in accepted
    assert wsauth(srv).counters["missing"] == 1 and wsauth(srv).counters["accepted"] == 1


async def test_a_route_added_on_the_router_directly_is_not_a_500(
    app_name: str, secret: str
) -> None:
    # app.router.add() makes a route without Sanic's route.extra fields.
    app = build_app(app_name, secret)

    async def raw(request: Request) -> Any:
        return text("raw")

    app.router.add("/raw", ["GET"], raw)
    async with serve(app) as srv:
        result = await _raw_http(srv, "/raw")
        assert result == (200, "raw")


async def _raw_http(srv: Served, path: str) -> tuple[int, str]:
    import urllib.request

    def get() -> tuple[int, str]:
        with urllib.request.urlopen(f"{srv.http}{path}", timeout=5) as response:  # noqa: S310
            return response.status, response.read().decode()

    return await asyncio.to_thread(get)


async def test_a_context_that_cannot_hold_the_ticket_is_503_and_spends_nothing(
    app_name: str, secret: str, caplog: pytest.LogCaptureFixture
) -> None:
    from dataclasses import dataclass

    from sanic.request import Request as SanicRequest

    @dataclass(slots=True)
    class Ctx:
        user: str | None = None

    class SlottedContextRequest(SanicRequest):
        @staticmethod
        def make_context() -> Any:
            return Ctx()

    store = MemoryReplayStore()
    app: Sanic[Any, Any] = Sanic(app_name, request_class=SlottedContextRequest)
    WSAuth(app, secret_keys=secret, store=store)

    @app.websocket("/ws")
    async def echo(request: Request, ws: Any) -> None:
        await ws.send("opened")

    async with serve(app) as srv:
        result = await handshake(f"{srv.ws}/ws?token={wsauth(srv).issue('dave')}")
        assert_refused(result, 503, "context_unusable")
    assert len(store) == 0  # refused before the claim: the ticket is not spent
    assert wsauth(srv).counters == {"context_unusable": 1}
    assert any("cannot hold the ticket" in r.getMessage() for r in caplog.records)


async def test_the_default_audience_is_the_decoded_path(app_name: str, secret: str) -> None:
    """The handler sees /ws/room/%61dmin as room "admin": its audience is
    /ws/room/admin, so a ticket for the literal spelling cannot sidestep an
    authorize() that refuses /ws/room/admin; and a ticket for /ws/café opens
    the route the browser requests as /ws/caf%C3%A9."""
    app: Sanic[Any, Any] = Sanic(app_name)
    WSAuth(app, secret_keys=secret)

    @app.websocket("/ws/room/<room>", unquote=True)
    async def room(request: Request, ws: Any, room: str) -> None:
        await ws.send(f"room {room}")

    @app.websocket("/ws/café")
    async def cafe(request: Request, ws: Any) -> None:
        await ws.send("café")

    async with serve(app) as srv:
        ext = wsauth(srv)
        for audience, path, outcome in [
            # The literal spelling is refused; the decoded one opens the route.
            ("/ws/room/%61dmin", "/ws/room/%61dmin", None),
            ("/ws/room/admin", "/ws/room/%61dmin", "room admin"),
            ("/ws/café", "/ws/caf%C3%A9", "café"),
            # %2F stays encoded: one segment does not pass for two.
            ("/ws/room/a/b", "/ws/room/a%2Fb", None),
            # Two rooms the handler tells apart ("a/b" and "a%2Fb") never share
            # an audience: a decoded "%" is written %25.
            ("/ws/room/a%2Fb", "/ws/room/a%2Fb", "room a/b"),
            ("/ws/room/a%2Fb", "/ws/room/a%252Fb", None),
            ("/ws/room/a%252Fb", "/ws/room/a%252Fb", "room a%2Fb"),
            ("/ws/room/100%25", "/ws/room/100%25", "room 100%"),
        ]:
            result = await handshake(f"{srv.ws}{path}?token={ext.issue('eve', audience=audience)}")
            if outcome is None:
                assert_refused(result, 403, "audience_mismatch")
            else:
                assert (result.status, result.reply) == (101, outcome), (audience, path)


async def test_only_the_decorator_makes_a_route_public(app_name: str, secret: str) -> None:
    app = build_app(app_name, secret)

    async def feed(request: Request, ws: Any) -> None:
        await ws.send("feed")

    # Sanic's route context keywords are not a way around the guard.
    app.add_websocket_route(feed, "/feed", ctx_wsauth_public=True)
    async with serve(app) as srv:
        assert_refused(await handshake(f"{srv.ws}/feed"), 401, "missing")


async def test_class_based_views_take_the_markers_on_get_the_class_or_decorators(
    app_name: str, secret: str
) -> None:
    from sanic.views import HTTPMethodView

    app = build_app(app_name, secret)

    class Echo(HTTPMethodView):
        async def get(self, request: Request, ws: Any) -> None:
            ticket = getattr(request.ctx, "ticket", None)  # public routes have none
            subject = ticket.subject if ticket else "anyone"
            await ws.send(f"{type(self).__name__} {subject}: {await ws.recv()}")

    class OnGet(Echo):
        @WSAuth.public
        async def get(self, request: Request, ws: Any) -> None:
            await super().get(request, ws)

    @WSAuth.public
    class OnClass(Echo):
        pass

    class ByDecorators(Echo):
        decorators = [WSAuth.public]

    @WSAuth.audience("lobby")
    class Room(Echo):
        @WSAuth.audience("room-1")  # the method's own marker wins over the class's
        async def get(self, request: Request, ws: Any) -> None:
            await super().get(request, ws)

    @WSAuth.audience("lobby")
    class Lobby(Echo):
        pass

    # Nothing is inherited but Sanic's own decorators list: a subclass of a
    # public view, or of one with an audience, is protected as any other route.
    class FromPublicClass(OnClass):
        async def get(self, request: Request, ws: Any) -> None:
            await super().get(request, ws)

    class FromPublicGet(OnGet):
        pass

    class FromLobby(Lobby):
        pass

    class FromDecorators(ByDecorators):  # Sanic applies the inherited list
        pass

    class PlainHTTP(HTTPMethodView):
        @WSAuth.public
        async def get(self, request: Request) -> Any:
            return text("plain")

    for view, path in [
        (Echo, "/cbv"),
        (OnGet, "/cbv/get"),
        (OnClass, "/cbv/class"),
        (ByDecorators, "/cbv/decorators"),
        (Room, "/cbv/room"),
        (Lobby, "/cbv/lobby"),
        (FromPublicClass, "/cbv/from-class"),
        (FromPublicGet, "/cbv/from-get"),
        (FromLobby, "/cbv/from-lobby"),
        (FromDecorators, "/cbv/from-decorators"),
    ]:
        app.add_websocket_route(view.as_view(), path)
    app.add_route(PlainHTTP.as_view(), "/cbv/http")  # an upgrade there is guarded too
    async with serve(app) as srv:
        ext = wsauth(srv)
        for view_name, path in [("OnGet", "get"), ("OnClass", "class")]:
            result = await handshake(f"{srv.ws}/cbv/{path}")
            assert (result.status, result.reply) == (101, f"{view_name} anyone: ping")
        result = await handshake(f"{srv.ws}/cbv/decorators")
        assert (result.status, result.reply) == (101, "ByDecorators anyone: ping")
        result = await handshake(f"{srv.ws}/cbv/from-decorators")
        assert (result.status, result.reply) == (101, "FromDecorators anyone: ping")
        for path in ["from-class", "from-get", "http"]:
            assert_refused(await handshake(f"{srv.ws}/cbv/{path}"), 401, "missing")
        result = await handshake(f"{srv.ws}/cbv/from-class?token={ext.issue('bob')}")
        assert (result.status, result.reply) == (101, "FromPublicClass bob: ping")
        # Unmarked: a ticket is needed, and the view sees who the client is.
        assert_refused(await handshake(f"{srv.ws}/cbv"), 401, "missing")
        result = await handshake(f"{srv.ws}/cbv?token={ext.issue('bob')}")
        assert (result.status, result.reply) == (101, "Echo bob: ping")
        # Audiences: the default is the path; a marker on get() beats the class's.
        result = await handshake(f"{srv.ws}/cbv?token={ext.issue('bob', audience='/cbv')}")
        assert result.status == 101
        for path, audience, opens in [
            ("room", "room-1", True),
            ("room", "lobby", False),
            ("room", "/cbv/room", False),
            ("lobby", "lobby", True),
            ("lobby", "/cbv/lobby", False),
            ("from-lobby", "lobby", False),  # its own path, not the parent's audience
            ("from-lobby", "/cbv/from-lobby", True),
        ]:
            token = ext.issue("eve", audience=audience)
            result = await handshake(f"{srv.ws}/cbv/{path}?token={token}")
            if opens:
                assert result.status == 101, (path, audience)
            else:
                assert_refused(result, 403, "audience_mismatch")


_KEY = "dGhlIHNhbXBsZSBub25jZQ=="


@pytest.mark.parametrize(
    "headers",
    [
        [],  # a plain GET of the socket's URL (a link preview, a pasted URL)
        [("Upgrade", "websocket"), ("Sec-WebSocket-Key", _KEY), ("Sec-WebSocket-Version", "13")],
        [("Connection", "Upgrade"), ("Sec-WebSocket-Key", _KEY), ("Sec-WebSocket-Version", "13")],
        [("Upgrade", "websocket"), ("Connection", "Upgrade"), ("Sec-WebSocket-Version", "13")],
        [
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Key", "not-base64-of-16-bytes!!"),
            ("Sec-WebSocket-Version", "13"),
        ],
        [
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Key", _KEY),
            ("Sec-WebSocket-Key", _KEY),
            ("Sec-WebSocket-Version", "13"),
        ],
        [
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Key", _KEY),
            ("Sec-WebSocket-Version", "8"),
        ],
        [
            ("Upgrade", "websocket, h2c"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Key", _KEY),
            ("Sec-WebSocket-Version", "13"),
        ],
        # Lists websockets cannot parse (it answers 400 after the guard):
        [
            ("Upgrade", "websocket"),
            ("Connection", 'upgrade, "x"'),
            ("Sec-WebSocket-Key", _KEY),
            ("Sec-WebSocket-Version", "13"),
        ],
        # Sanic gives websockets a header's first value once per occurrence:
        # it reads "keep-alive, keep-alive" here.
        [
            ("Upgrade", "websocket"),
            ("Connection", "keep-alive"),
            ("Connection", "upgrade"),
            ("Sec-WebSocket-Key", _KEY),
            ("Sec-WebSocket-Version", "13"),
        ],
        [
            ("Upgrade", "websocket x"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Key", _KEY),
            ("Sec-WebSocket-Version", "13"),
        ],
        [
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Key", _KEY),
            ("Sec-WebSocket-Version", "13"),
            ("Sec-WebSocket-Protocol", 'chat, "x"'),
        ],
    ],
    ids=[
        "plain-get",
        "no-connection",
        "no-upgrade",
        "no-key",
        "bad-key",
        "two-keys",
        "version-8",
        "two-upgrades",
        "quoted-connection-option",
        "upgrade-only-in-a-second-connection-header",
        "upgrade-not-a-list",
        "quoted-subprotocol",
    ],
)
async def test_a_handshake_websockets_would_refuse_does_not_spend_the_ticket(
    served: Served, headers: list[tuple[str, str]]
) -> None:
    token = wsauth(served).issue("frank")
    reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
    lines = "".join(f"{name}: {value}\r\n" for name, value in headers)
    writer.write(f"GET /ws?token={token} HTTP/1.1\r\nHost: x\r\n{lines}\r\n".encode())
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    body = await asyncio.wait_for(reader.read(200), 10)
    writer.close()
    assert head.startswith(b"HTTP/1.1 400"), head
    assert json.loads(body) == {"error": "bad_handshake"}
    # The ticket was not spent: it still opens a socket.
    result = await handshake(f"{served.ws}/ws?token={token}")
    assert result.status == 101 and result.reply == "frank: ping"


@pytest.mark.parametrize("check_origin", [False, True], ids=["origin-check-off", "on"])
async def test_two_origin_headers_never_spend_the_ticket(
    app_name: str, secret: str, check_origin: bool
) -> None:
    """websockets refuses several Origin headers whatever the app's settings:
    with the origin check off, the pre-check refuses them before the claim."""
    app = build_app(app_name, secret, check_origin=check_origin)
    async with serve(app) as srv:
        token = wsauth(srv).issue("frank")
        origin = f"http://127.0.0.1:{srv.port}"
        twice = await raw_upgrade(
            srv.port, f"/ws?token={token}", [("Origin", origin), ("Origin", origin)]
        )
        expected = (403, "origin_forbidden") if check_origin else (400, "bad_handshake")
        assert (twice.status, twice.json()["error"]) == expected
        result = await handshake(f"{srv.ws}/ws?token={token}", origin=origin)
        assert result.status == 101 and result.reply == "frank: ping"


@pytest.mark.parametrize("error", [StoreUnavailable, RuntimeError])
async def test_a_store_fault_leaves_no_request_behind(
    app_name: str, secret: str, error: Callable[[], Exception]
) -> None:
    """A refused handshake is freed at once, not kept in a reference cycle (its
    error's traceback and the guard's frame) until the collector runs."""
    app = build_app(app_name, secret, store=_BrokenStore(error))
    async with serve(app) as srv:
        tokens = [wsauth(srv).issue("a") for _ in range(10)]
        gc.collect()
        gc.disable()
        try:
            before = sum(isinstance(o, Request) for o in gc.get_objects())
            for token in tokens:
                result = await handshake(f"{srv.ws}/ws?token={token}")
                assert_refused(result, 503, "store_unavailable")
            await asyncio.sleep(0.2)
            after = sum(isinstance(o, Request) for o in gc.get_objects())
        finally:
            gc.enable()
        assert after <= before


@pytest.mark.parametrize(
    "headers",
    [
        [("Upgrade", "websocket,"), ("Connection", "Upgrade")],
        [("Upgrade", ", websocket"), ("Connection", "Upgrade")],
        [("Upgrade", "WebSocket"), ("Connection", "keep-alive, Upgrade")],
        [("Upgrade", "websocket ,"), ("Connection", "Upgrade"), ("Connection", "keep alive")],
    ],
    ids=["trailing-comma", "leading-comma", "firefox-style", "second-connection-header-unread"],
)
async def test_every_handshake_websockets_accepts_passes_the_guard(
    served: Served, headers: list[tuple[str, str]]
) -> None:
    """The pre-check is no stricter than websockets: empty list elements and
    other spellings it accepts open the socket."""
    token = wsauth(served).issue("gina")
    reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
    lines = "".join(f"{name}: {value}\r\n" for name, value in headers)
    writer.write(
        f"GET /ws?token={token} HTTP/1.1\r\nHost: x\r\n{lines}"
        f"Sec-WebSocket-Key: {_KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    body = b"" if head.startswith(b"HTTP/1.1 101") else await reader.read(200)
    writer.close()
    assert head.startswith(b"HTTP/1.1 101"), head + body
    assert wsauth(served).counters["accepted"] >= 1
