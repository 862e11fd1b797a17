"""Connection age and in-band refresh, against a real server and client."""

from __future__ import annotations

import asyncio
import base64
import gc
import json
import os
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sanic import Request, Sanic
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from sanic_wsauth import ConfigurationError, MemoryReplayStore, TicketIssuer, WSAuth
from sanic_wsauth.demo import DEMO_SUBPROTOCOL
from sanic_wsauth.ext.lifetime import NOT_REFRESH, ConnectionLifetime, parse_refresh

from ._support import Served, post_token, run_demo, serve
from .test_asgi import _app as asgi_app
from .test_asgi import uvicorn_server

#: Generous bound that only catches a hang, never a slow machine.
LIVENESS = 15.0


def _app(name: str, secret: str, **options: Any) -> tuple[Sanic[Any, Any], WSAuth, list[Any]]:
    app: Sanic[Any, Any] = Sanic(name)
    app.config.WEBSOCKET_PING_INTERVAL = None
    wsauth = WSAuth(app, secret_keys=secret, authenticate=lambda r: "alice", **options)
    seen: list[Any] = []

    @app.websocket("/ws")
    async def echo(request: Request, ws: Any) -> None:
        async for message in ws:
            seen.append(message)
            await ws.send(f"{request.ctx.ticket.subject}: {message}")

    @app.websocket("/blocked")
    async def blocked(request: Request, ws: Any) -> None:
        # Never reads: the cap must still close the socket.
        await asyncio.Event().wait()

    @app.websocket("/open")
    @WSAuth.public
    async def open_route(request: Request, ws: Any) -> None:
        async for message in ws:
            await ws.send(message)

    @app.websocket("/sink")
    async def sink(request: Request, ws: Any) -> None:
        # Reads and never answers: it goes on reading while the socket closes.
        async for message in ws:
            seen.append(message)

    @app.websocket("/closes")
    async def closes(request: Request, ws: Any) -> None:
        # Closes at once, then holds on (Sanic's own cut-off never starts).
        await ws.close()
        await asyncio.Event().wait()

    return app, wsauth, seen


@pytest.fixture
async def capped(secret: str, app_name: str) -> AsyncIterator[tuple[Served, WSAuth, list[Any]]]:
    app, wsauth, seen = _app(app_name, secret, max_connection_age=1.5, refresh=True)
    async with serve(app) as srv:
        yield srv, wsauth, seen


async def _closed(ws: ClientConnection) -> ConnectionClosed:
    """Read until the server closes; return the close."""

    async def drain() -> ConnectionClosed:
        try:
            while True:
                await ws.recv()
        except ConnectionClosed as exc:
            return exc

    return await asyncio.wait_for(drain(), LIVENESS)


def _close_of(exc: ConnectionClosed) -> tuple[int, str]:
    assert exc.rcvd is not None, "the server sent no close frame"
    return exc.rcvd.code, exc.rcvd.reason


def _refresh_frame(token: object) -> str:
    return json.dumps({"type": "wsauth.refresh", "token": token})


async def test_endpoint_announces_age_and_refresh(capped: Any) -> None:
    srv, _, _ = capped
    status, body, _ = await asyncio.to_thread(post_token, srv.http)
    assert status == 200
    assert body["max_connection_age"] == 1.5
    assert body["refresh"] is True


async def test_endpoint_without_cap_has_no_fields(secret: str, app_name: str) -> None:
    app, _, _ = _app(app_name, secret)
    async with serve(app) as srv:
        status, body, _ = await asyncio.to_thread(post_token, srv.http)
    assert status == 200
    assert "max_connection_age" not in body and "refresh" not in body


async def test_integral_age_is_an_integer(secret: str, app_name: str) -> None:
    app, _, _ = _app(app_name, secret, max_connection_age=30)
    async with serve(app) as srv:
        _, body, _ = await asyncio.to_thread(post_token, srv.http)
    assert body["max_connection_age"] == 30 and isinstance(body["max_connection_age"], int)
    assert body["refresh"] is False


async def test_cap_closes_with_4001_while_handler_waits_in_recv(capped: Any) -> None:
    srv, wsauth, _ = capped
    started = time.monotonic()
    async with connect(f"{srv.ws}/ws?token={wsauth.issue('alice')}") as ws:
        await ws.send("hi")
        assert await ws.recv() == "alice: hi"
        closed = await _closed(ws)
    assert _close_of(closed) == (4001, "connection_age")
    # Not before the cap (1.5 s, measured from after the handshake).
    assert time.monotonic() - started >= 1.4
    assert wsauth.counters["connection_age"] == 1


async def test_cap_closes_a_handler_that_never_reads(capped: Any) -> None:
    srv, wsauth, _ = capped
    async with connect(f"{srv.ws}/blocked?token={wsauth.issue('alice')}") as ws:
        closed = await _closed(ws)
    assert _close_of(closed) == (4001, "connection_age")


async def test_public_route_is_not_capped(capped: Any) -> None:
    srv, _, _ = capped
    async with connect(f"{srv.ws}/open") as ws:
        await asyncio.sleep(2.0)
        await ws.send("still here")
        assert await ws.recv() == "still here"


async def test_refresh_extends_the_deadline_and_is_not_delivered(capped: Any) -> None:
    srv, wsauth, seen = capped
    started = time.monotonic()
    async with connect(f"{srv.ws}/ws?token={wsauth.issue('alice')}") as ws:
        # Refresh twice, each time at ~2/3 of the cap: the socket outlives
        # two original caps.
        for _ in range(2):
            await asyncio.sleep(1.0)
            status, body, _ = await asyncio.to_thread(post_token, srv.http)
            assert status == 200
            await ws.send(_refresh_frame(body["token"]))
            answer = json.loads(await ws.recv())
            assert answer == {"type": "wsauth.refreshed", "expires_in": 1.5}
        assert time.monotonic() - started > 2 * 1.5 * 2 / 3
        await ws.send("after refresh")
        assert await ws.recv() == "alice: after refresh"
        closed = await _closed(ws)
    assert _close_of(closed) == (4001, "connection_age")
    assert seen == ["after refresh"]  # the handler never saw a refresh frame
    assert wsauth.counters["refreshed"] == 2


class _SlowStore(MemoryReplayStore):
    """A replay set whose claims take a while, like Redis under load."""

    def __init__(self, delay: float) -> None:
        super().__init__()
        self.delay = delay

    async def claim(self, jti: str, expires_at: float) -> bool:
        await asyncio.sleep(self.delay)
        return await super().claim(jti, expires_at)


@pytest.mark.parametrize("asgi", [False, True], ids=["sanic", "asgi"])
async def test_a_refresh_whose_claim_outlasts_the_cap_does_not_extend_it(
    secret: str, app_name: str, asgi: bool
) -> None:
    options: dict[str, Any] = {
        "max_connection_age": 1.0,
        "refresh": True,
        "store": _SlowStore(0.8),
    }
    if asgi:
        app, wsauth = asgi_app(app_name, secret, **options)
    else:
        app, wsauth, _ = _app(app_name, secret, **options)
    runner: Any = uvicorn_server if asgi else serve
    async with runner(app) as srv:
        base = f"ws://{srv}" if asgi else srv.ws
        # The handshake's own claim takes 0.8 s too; the cap counts from the 101.
        async with connect(f"{base}/ws?token={wsauth.issue('alice')}") as ws:
            await asyncio.sleep(0.5)
            # Claimed from 0.5 s to 1.3 s: the cap closes the socket at 1.0 s.
            await ws.send(_refresh_frame(wsauth.issue("alice")))
            closed = await _closed(ws)
    assert _close_of(closed) == (4001, "connection_age")
    assert wsauth.counters["connection_age"] == 1
    assert wsauth.counters["refreshed"] == 0  # not extended, not counted, no answer sent


def _close_timeout(app: Sanic[Any, Any], seconds: float) -> None:
    """Wait this long (not Sanic's 10 s) for a client to answer a close frame."""

    @app.signal("websocket.handler.before")
    async def close_timeout(request: Request, websocket: Any) -> None:
        websocket.close_timeout = seconds


async def _raw_client(
    port: int, token: str, path: str = "/ws"
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A websocket client by hand (one that can ignore a close): the upgrade sent."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        (
            f"GET {path}?token={token} HTTP/1.1\r\nHost: x\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    await writer.drain()
    return reader, writer


async def _upgraded(
    port: int, token: str, path: str = "/ws"
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """:func:`_raw_client`, past the server's 101."""
    reader, writer = await _raw_client(port, token, path)
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), LIVENESS)
    assert head.startswith(b"HTTP/1.1 101")
    return reader, writer


async def _until_eof(reader: asyncio.StreamReader) -> bytes:
    received = b""

    async def read() -> None:
        nonlocal received
        while chunk := await reader.read(4096):
            received += chunk

    await asyncio.wait_for(read(), LIVENESS)
    return received


def _masked_text(payload: bytes) -> bytes:
    """One client text frame (masked, as RFC 6455 requires of clients)."""
    mask = os.urandom(4)
    size = len(payload)
    length = bytes([0x80 | size]) if size < 126 else bytes([0x80 | 126]) + size.to_bytes(2, "big")
    return b"\x81" + length + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


async def test_a_refresh_claimed_while_the_cap_is_closing_gets_no_answer(
    secret: str, app_name: str
) -> None:
    """The cap sends its close at 1.0 s; the client never answers it, so the
    socket is still up (closing) when the refresh's claim returns at 1.3 s."""
    app, wsauth, _ = _app(
        app_name, secret, max_connection_age=1.0, refresh=True, store=_SlowStore(0.8)
    )

    _close_timeout(app, 2)

    async with serve(app) as srv:
        reader, writer = await _raw_client(srv.port, wsauth.issue("alice"))
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), LIVENESS)
            assert head.startswith(b"HTTP/1.1 101")
            await asyncio.sleep(0.5)
            writer.write(_masked_text(_refresh_frame(wsauth.issue("alice")).encode()))
            received = await _until_eof(reader)  # never answers the close
        finally:
            writer.close()
    assert received[:1] == b"\x88"  # the close frame, and nothing before it
    assert received[4 : 4 + received[1] - 2] == b"connection_age"
    assert b"wsauth.refreshed" not in received
    assert wsauth.counters["refreshed"] == 0 and wsauth.counters["connection_age"] == 1


async def test_refresh_updates_the_ticket_seen_by_the_handler(secret: str, app_name: str) -> None:
    app: Sanic[Any, Any] = Sanic(app_name)
    wsauth = WSAuth(app, secret_keys=secret, max_connection_age=5, refresh=True)

    @app.websocket("/ws")
    async def claims(request: Request, ws: Any) -> None:
        async for _ in ws:
            await ws.send(json.dumps(dict(request.ctx.ticket.claims)))

    async with serve(app) as srv:
        async with connect(f"{srv.ws}/ws?token={wsauth.issue('bob', claims={'n': 1})}") as ws:
            await ws.send(_refresh_frame(wsauth.issue("bob", claims={"n": 2})))
            assert json.loads(await ws.recv())["type"] == "wsauth.refreshed"
            await ws.send("claims?")
            assert json.loads(await ws.recv()) == {"n": 2}


@pytest.mark.parametrize(
    ("make_token", "reason"),
    [
        (lambda w, first: first, "replayed"),
        (lambda w, first: w.issue("mallory"), "subject_mismatch"),
        (lambda w, first: w.issue("alice", audience="/elsewhere"), "audience_mismatch"),
        (lambda w, first: "not-a-ticket", "malformed"),
        (lambda w, first: "", "missing"),
        (lambda w, first: 42, "missing"),
        (lambda w, first: first[:-2] + ("AA" if first[-2:] != "AA" else "BB"), "bad_signature"),
        (lambda w, first: "x" * 10_000, "too_large"),
    ],
)
async def test_bad_refresh_closes_with_4003_and_the_reason(
    capped: Any, make_token: Any, reason: str
) -> None:
    srv, wsauth, seen = capped
    first = wsauth.issue("alice")
    async with connect(f"{srv.ws}/ws?token={first}") as ws:
        await ws.send(_refresh_frame(make_token(wsauth, first)))
        closed = await _closed(ws)
    assert _close_of(closed) == (4003, reason)
    assert seen == []
    assert wsauth.counters[reason] == 1


async def test_expired_refresh_closes_with_4003(capped: Any, secret: str) -> None:
    srv, wsauth, _ = capped
    old = TicketIssuer(secret, clock=lambda: time.time() - 3600).issue("alice")
    async with connect(f"{srv.ws}/ws?token={wsauth.issue('alice')}") as ws:
        await ws.send(_refresh_frame(old))
        closed = await _closed(ws)
    assert _close_of(closed) == (4003, "expired")


async def test_refresh_consumes_the_ticket(capped: Any) -> None:
    srv, wsauth, _ = capped
    fresh = wsauth.issue("alice")
    async with connect(f"{srv.ws}/ws?token={wsauth.issue('alice')}") as ws:
        await ws.send(_refresh_frame(fresh))
        assert json.loads(await ws.recv())["type"] == "wsauth.refreshed"
    # The refresh ticket was claimed: it cannot open another socket.
    async with connect(f"{srv.ws}/ws?token={wsauth.issue('alice')}") as ws:
        await ws.send(_refresh_frame(fresh))
        assert _close_of(await _closed(ws)) == (4003, "replayed")


async def test_without_refresh_the_frame_is_the_apps(secret: str, app_name: str) -> None:
    app, wsauth, seen = _app(app_name, secret, max_connection_age=5, refresh=False)
    async with serve(app) as srv:
        frame = _refresh_frame(wsauth.issue("alice"))
        async with connect(f"{srv.ws}/ws?token={wsauth.issue('alice')}") as ws:
            await ws.send(frame)
            assert await ws.recv() == f"alice: {frame}"
    assert seen == [frame]


async def test_application_messages_pass_through(capped: Any) -> None:
    srv, wsauth, seen = capped
    messages: list[str | bytes] = [
        '{"type": "chat", "text": "wsauth.refresh is a word here"}',
        '{"type": "wsauth.refresh", oops not json',
        "wsauth.refresh",
        b'{"type": "wsauth.refresh", "token": "binary frames are the app\'s"}',
    ]
    async with connect(f"{srv.ws}/ws?token={wsauth.issue('alice')}") as ws:
        for message in messages:
            await ws.send(message)
            await ws.recv()
        # A fragmented message is the app's too (a refresh is one frame).
        await ws.send(iter(['{"type": "wsauth.refresh", ', '"token": "x"}']))
        await ws.recv()
    assert seen == [*messages, '{"type": "wsauth.refresh", "token": "x"}']


async def test_age_set_after_the_extension_refuses_to_start(secret: str, app_name: str) -> None:
    app, _, _ = _app(app_name, secret)
    app.config.WSAUTH_MAX_CONNECTION_AGE = 5
    with pytest.raises(ConfigurationError, match="MAX_CONNECTION_AGE"):
        async with serve(app):
            pass


def test_parse_refresh() -> None:
    assert parse_refresh('{"type":"wsauth.refresh","token":"abc"}') == "abc"
    assert parse_refresh(b'{"type":"wsauth.refresh"}') is None
    assert parse_refresh(b'{"type":"wsauth.refreshX","token":"abc"}') is NOT_REFRESH
    assert parse_refresh(b'["wsauth.refresh"]') is NOT_REFRESH
    assert parse_refresh(b"\xff wsauth.refresh") is NOT_REFRESH
    assert parse_refresh(b"[" * 100_000 + b'"wsauth.refresh"') is NOT_REFRESH


@pytest.mark.slow
def test_demo_with_env_caps_and_refreshes_across_workers() -> None:
    env = {"SANIC_WSAUTH_MAX_CONNECTION_AGE": "2", "SANIC_WSAUTH_REFRESH": "true"}
    with run_demo(workers=2, env=env) as (_, port):
        base = f"http://127.0.0.1:{port}"

        def ticket() -> str:
            status, body, _ = post_token(base, api_key="test-api-key")
            assert status == 200
            assert body["max_connection_age"] == 2 and body["refresh"] is True
            return str(body["token"])

        async def scenario() -> tuple[int, str]:
            async with connect(
                f"ws://127.0.0.1:{port}/ws?token={ticket()}",
                subprotocols=[DEMO_SUBPROTOCOL],  # type: ignore[list-item]
            ) as ws:
                await asyncio.sleep(1.2)
                await ws.send(_refresh_frame(ticket()))
                assert json.loads(await ws.recv())["type"] == "wsauth.refreshed"
                await asyncio.sleep(1.2)  # past the first cap
                await ws.send("hello")
                assert await ws.recv() == "demo: hello"
                return _close_of(await _closed(ws))

        assert asyncio.run(scenario()) == (4001, "connection_age")


async def test_cap_cuts_off_a_client_that_ignores_the_close(secret: str, app_name: str) -> None:
    """A peer that never answers the close frame is disconnected anyway."""
    app, wsauth, _ = _app(app_name, secret, max_connection_age=1)

    _close_timeout(app, 1)

    async with serve(app) as srv:
        reader, writer = await _raw_client(srv.port, wsauth.issue("alice"))
        try:
            received = await _until_eof(reader)  # never answers, never closes
        finally:
            writer.close()
    assert received.startswith(b"HTTP/1.1 101")
    frame = received.split(b"\r\n\r\n", 1)[1]
    # An unmasked close frame: FIN+opcode 8, length, code 4001, reason.
    assert frame[0] == 0x88
    assert frame[2:4] == (4001).to_bytes(2, "big")
    assert frame[4 : 4 + frame[1] - 2] == b"connection_age"


async def _ignore_close_and_chatter(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> tuple[bytes, list[str]]:
    """Send a message every 50 ms and never answer a close frame, until the
    server cuts the connection. Returns what was received and the messages
    sent after the client had the server's close frame."""
    received = b""
    after_close: list[str] = []

    async def chatter() -> None:
        for n in range(1000):
            text = f"after-close-{n}" if b"\x88" in received else f"before-{n}"
            if text.startswith("after"):
                after_close.append(text)
            writer.write(_masked_text(text.encode()))
            await asyncio.sleep(0.05)

    sender = asyncio.create_task(chatter())
    try:

        async def read() -> None:
            nonlocal received
            while chunk := await reader.read(4096):
                received += chunk

        await asyncio.wait_for(read(), LIVENESS)
    finally:
        sender.cancel()
        writer.close()
    return received, after_close


async def test_a_refused_refresh_cuts_off_a_client_that_ignores_the_close(
    secret: str, app_name: str
) -> None:
    """A refused refresh (4003) must end the socket although the client never
    answers: otherwise the client stays past the cap, its messages delivered."""
    app, wsauth, seen = _app(app_name, secret, max_connection_age=30, refresh=True)
    _close_timeout(app, 1)
    async with serve(app) as srv:
        reader, writer = await _upgraded(srv.port, wsauth.issue("alice"), "/sink")
        writer.write(_masked_text(_refresh_frame("").encode()))  # refused: missing
        received, after_close = await _ignore_close_and_chatter(reader, writer)
    assert received[:1] == b"\x88" and received[2:4] == (4003).to_bytes(2, "big")
    assert after_close, "the client sent nothing after the close frame"
    assert not [m for m in seen if str(m).startswith("after-close")]
    assert not [m for m in seen if str(m).startswith("before")]  # all after the refusal
    assert wsauth.counters["missing"] == 1


async def test_the_cap_delivers_no_message_after_its_close(secret: str, app_name: str) -> None:
    app, wsauth, seen = _app(app_name, secret, max_connection_age=1)
    _close_timeout(app, 1.5)
    async with serve(app) as srv:
        reader, writer = await _upgraded(srv.port, wsauth.issue("alice"), "/sink")
        received, after_close = await _ignore_close_and_chatter(reader, writer)
    assert received[:1] == b"\x88" and received[2:4] == (4001).to_bytes(2, "big")
    assert after_close and seen  # messages before the cap reach the handler
    assert not [m for m in seen if str(m).startswith("after-close")]
    assert wsauth.counters["connection_age"] == 1


async def test_the_cap_cuts_a_socket_the_handler_closed_but_the_client_kept(
    secret: str, app_name: str
) -> None:
    """The handler closes at once and holds on; the client never answers."""
    app, wsauth, _ = _app(app_name, secret, max_connection_age=1)
    async with serve(app) as srv:
        reader, writer = await _upgraded(srv.port, wsauth.issue("alice"), "/closes")
        # Returns only once the server cuts the connection (else times out).
        received, _ = await _ignore_close_and_chatter(reader, writer)
    assert received[:1] == b"\x88" and received[2:4] == (1000).to_bytes(2, "big")


async def test_asgi_a_refused_refresh_ends_the_handlers_messages(
    secret: str, app_name: str
) -> None:
    """Behind uvicorn: after a refused refresh, recv() gives None for good,
    even to a handler that reads on and a client that ignores the close."""
    app: Sanic[Any, Any] = Sanic(app_name)
    wsauth = WSAuth(app, secret_keys=secret, max_connection_age=30, refresh=True)
    seen: list[Any] = []
    done = asyncio.Event()

    @app.websocket("/sink")
    async def sink(request: Request, ws: Any) -> None:
        for _ in range(40):  # reads on past the first None
            seen.append(await ws.recv())
            await asyncio.sleep(0.05)
        done.set()

    async with uvicorn_server(app) as host:
        port = int(host.rsplit(":", 1)[1])
        reader, writer = await _raw_client(port, wsauth.issue("alice"), "/sink")
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), LIVENESS)
            assert head.startswith(b"HTTP/1.1 101")
            writer.write(_masked_text(_refresh_frame("").encode()))  # refused: missing

            async def chatter() -> None:
                for n in range(1000):
                    writer.write(_masked_text(f"late-{n}".encode()))
                    await asyncio.sleep(0.05)

            sender = asyncio.create_task(chatter())
            await asyncio.wait_for(done.wait(), LIVENESS)
            sender.cancel()
            received = await asyncio.wait_for(reader.read(4096), LIVENESS)
        finally:
            writer.transport.abort()  # not waiting out uvicorn's close timeout
    assert received[:1] == b"\x88" and received[2:4] == (4003).to_bytes(2, "big")
    assert seen and all(message is None for message in seen)
    assert wsauth.counters["missing"] == 1


async def _not_reading_client(
    port: int, ticket: str
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Open /flood with a tiny receive buffer, and never read from it."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    reader, writer = await asyncio.open_connection(sock=sock)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        (
            f"GET /flood?token={ticket} HTTP/1.1\r\nHost: x\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    return reader, writer


@pytest.mark.parametrize("how", ["cap", "refused-refresh"])
async def test_a_client_that_stops_reading_is_cut_off(secret: str, app_name: str, how: str) -> None:
    """The handler floods a client that reads nothing: its send holds the
    socket's send lock for good, so the close frame itself cannot go out."""
    app, wsauth, _ = _app(
        app_name, secret, max_connection_age=1 if how == "cap" else 30, refresh=True
    )
    _close_timeout(app, 1)
    lost = asyncio.Event()

    @app.websocket("/flood")
    async def flood(request: Request, ws: Any) -> None:
        async def watch() -> None:
            await ws.wait_for_connection_lost()
            lost.set()

        watcher = asyncio.create_task(watch())
        try:
            while True:
                await ws.send(b"x" * 65536)
        finally:
            await watcher

    async with serve(app) as srv:
        reader, writer = await _not_reading_client(srv.port, wsauth.issue("alice"))
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), LIVENESS)
            assert head.startswith(b"HTTP/1.1 101")
            reader_transport = writer.transport
            assert isinstance(reader_transport, asyncio.Transport)
            reader_transport.pause_reading()  # reads nothing more
            if how == "refused-refresh":
                writer.write(_masked_text(_refresh_frame("").encode()))
            await asyncio.wait_for(lost.wait(), LIVENESS)
        finally:
            writer.transport.abort()
    reason = "connection_age" if how == "cap" else "missing"
    assert wsauth.counters[reason] == 1


def _watch_tasks() -> list[asyncio.Task[Any]]:
    """The age-cap watches still running."""
    return [t for t in asyncio.all_tasks() if "watch" in repr(t.get_coro())]


async def test_asgi_a_handler_that_returns_ends_its_lifetime(secret: str, app_name: str) -> None:
    """Behind uvicorn, a handler that answers and returns without reading the
    end of the socket: its lifetime ends with it, not at the cap (no watch
    task and no objects kept, no connection_age counted for a gone socket)."""
    app: Sanic[Any, Any] = Sanic(app_name)
    wsauth = WSAuth(app, secret_keys=secret, max_connection_age=1, refresh=True)

    @app.websocket("/once")
    async def once(request: Request, ws: Any) -> None:
        await ws.send("hello")

    @app.websocket("/fails")
    async def fails(request: Request, ws: Any) -> None:
        await ws.send("hello")
        raise RuntimeError("handler bug")  # websocket.handler.exception

    async with uvicorn_server(app) as host:
        for path in ["/once"] * 5 + ["/fails"] * 5:
            async with connect(f"ws://{host}{path}?token={wsauth.issue('alice')}") as ws:
                assert await ws.recv() == "hello"
                with pytest.raises(ConnectionClosed):
                    await asyncio.wait_for(ws.recv(), LIVENESS)
        await asyncio.sleep(0.3)
        assert _watch_tasks() == []
        await asyncio.sleep(1.2)  # past the cap
    assert wsauth.counters == {"accepted": 10}


async def test_asgi_the_cap_is_not_held_by_a_close_that_cannot_go_out(
    secret: str, app_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Behind uvicorn, a handler floods a client that reads nothing: the
    server's send waits for good, so the close frame cannot go out. The close
    is bounded (ASGI_CLOSE_TIMEOUT) and the watch ends; nothing reaches the
    handler after the cap. (ASGI has no way to cut the connection itself.)"""
    from sanic_wsauth.ext import lifetime

    monkeypatch.setattr(lifetime, "ASGI_CLOSE_TIMEOUT", 1.0)
    app: Sanic[Any, Any] = Sanic(app_name)
    wsauth = WSAuth(app, secret_keys=secret, max_connection_age=1, refresh=True)
    flooding = asyncio.Event()

    @app.websocket("/flood")
    async def flood(request: Request, ws: Any) -> None:
        flooding.set()
        while True:
            await ws.send(b"x" * 65536)

    async with uvicorn_server(app) as host:
        port = int(host.rsplit(":", 1)[1])
        reader, writer = await _not_reading_client(port, wsauth.issue("alice"))
        try:
            await asyncio.wait_for(flooding.wait(), LIVENESS)
            await asyncio.sleep(1.0 + 1.0 + 0.5)  # the cap, then the bounded close
            assert wsauth.counters["connection_age"] == 1
            assert _watch_tasks() == []
        finally:
            writer.transport.abort()


async def test_a_refresh_after_the_deadline_does_not_extend(secret: str, app_name: str) -> None:
    """A refresh read after the deadline but before the watch ran (the event
    loop was busy at the cap) is too late: not claimed, not answered, the
    deadline not moved. The deadline is moved into the past by hand here, as
    a busy loop would leave it, while the watch still sleeps."""
    app, wsauth, _ = _app(app_name, secret, max_connection_age=30, refresh=True)

    @app.websocket("/late")
    async def late(request: Request, ws: Any) -> None:
        async for message in ws:
            if message == "expire":
                [lifetime] = [
                    o
                    for o in gc.get_objects()
                    if isinstance(o, ConnectionLifetime) and o._request is request
                ]
                lifetime.deadline = asyncio.get_running_loop().time() - 0.001
            await ws.send(message)

    async with serve(app) as srv:
        ticket = wsauth.issue("alice")
        async with connect(f"{srv.ws}/late?token={wsauth.issue('alice')}") as ws:
            await ws.send("expire")
            assert await ws.recv() == "expire"
            await ws.send(_refresh_frame(ticket))
            await ws.send("after")
            assert await ws.recv() == "after"  # and no "wsauth.refreshed" before it
        assert "refreshed" not in wsauth.counters
        # Not spent: the late refresh's ticket still opens a socket.
        async with connect(f"{srv.ws}/late?token={ticket}") as ws:
            await ws.send("hi")
            assert await ws.recv() == "hi"


async def test_a_context_type_with_only_a_ticket_slot_works_with_the_cap(
    secret: str, app_name: str
) -> None:
    """The README tells apps with their own context type to give it a
    ``ticket`` attribute: that is all the age cap needs too."""

    from sanic.request import Request as SanicRequest

    class Context:
        __slots__ = ("ticket",)

    class TicketOnlyRequest(SanicRequest):
        @staticmethod
        def make_context() -> Any:
            return Context()

    app: Sanic[Any, Any] = Sanic(app_name, request_class=TicketOnlyRequest)
    wsauth = WSAuth(app, secret_keys=secret, max_connection_age=1, refresh=True)

    @app.websocket("/ws")
    async def echo(request: Request, ws: Any) -> None:
        async for message in ws:
            await ws.send(f"{request.ctx.ticket.subject}: {message}")

    async with serve(app) as srv:
        async with connect(f"{srv.ws}/ws?token={wsauth.issue('alice')}") as ws:
            await ws.send("hi")
            assert await ws.recv() == "alice: hi"
            closed = await asyncio.wait_for(_closed(ws), LIVENESS)
        assert _close_of(closed) == (4001, "connection_age")
