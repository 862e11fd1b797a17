"""Sanic behind a real ASGI server (uvicorn): clear refusals, age cap, refresh."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import ssl
import subprocess
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, MutableMapping
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from sanic import Request, Sanic
from sanic.response import text
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from sanic_wsauth import WSAuth

from ._support import handshake

LIVENESS = 15.0


def _app(name: str, secret: str, **options: Any) -> tuple[Sanic[Any, Any], WSAuth]:
    app: Sanic[Any, Any] = Sanic(name)
    wsauth = WSAuth(app, secret_keys=secret, **options)

    @app.websocket("/ws")
    async def echo(request: Request, ws: Any) -> None:
        # Sanic's ASGI connection has no ``async for``; recv() gives None
        # once the socket is gone.
        while (message := await ws.recv()) is not None:
            await ws.send(f"{request.ctx.ticket.subject}: {message}")

    return app, wsauth


@contextlib.asynccontextmanager
async def uvicorn_server(
    app: Sanic[Any, Any], *, log_level: str = "critical", **options: Any
) -> AsyncIterator[str]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app, ws="websockets-sansio", log_level=log_level, lifespan="on", **options
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        for _ in range(int(LIVENESS / 0.02)):
            if server.started or task.done():
                break
            await asyncio.sleep(0.02)
        if task.done():
            task.result()
        assert server.started, "uvicorn did not start"
        yield f"127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, LIVENESS)
        sock.close()


async def test_refusals_are_clear_4xx(secret: str, app_name: str) -> None:
    app, wsauth = _app(app_name, secret)
    async with uvicorn_server(app) as host:
        ok = await handshake(f"ws://{host}/ws?token={wsauth.issue('alice')}")
        assert ok.status == 101 and ok.reply == "alice: ping"
        for url, origin, status, reason in (
            (f"ws://{host}/ws?token=junk", None, 401, "malformed"),
            (f"ws://{host}/ws", None, 401, "missing"),
            (f"ws://{host}/ws?token={wsauth.issue('a')}", "https://evil.example", 403, None),
        ):
            refused = await handshake(url, origin=origin)
            assert refused.status == status
            expected = reason or "origin_forbidden"
            assert json.loads(refused.body) == {"error": expected}
    assert wsauth.counters == {"accepted": 1, "malformed": 1, "missing": 1, "origin_forbidden": 1}


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1, made by the openssl command."""
    where = tmp_path_factory.mktemp("tls")
    key, cert = where / "key.pem", where / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"]
        + [
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ]
        + ["-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )
    return key, cert


async def test_same_origin_https_page_opens_a_socket_over_tls(
    secret: str, app_name: str, certificate: tuple[Path, Path]
) -> None:
    """Sanic's ASGI connection info never reports TLS: the own origin is read
    from the ASGI scope's scheme, or an https page of the same site is refused."""
    key, cert = certificate
    app, wsauth = _app(app_name, secret)
    context = ssl.create_default_context(cafile=str(cert))
    async with uvicorn_server(app, ssl_keyfile=str(key), ssl_certfile=str(cert)) as host:
        url = f"wss://{host}/ws?token="
        ok = await handshake(url + wsauth.issue("alice"), origin=f"https://{host}", ssl=context)
        assert ok.status == 101 and ok.reply == "alice: ping"
        for origin in (f"http://{host}", "https://evil.example"):
            refused = await handshake(url + wsauth.issue("a"), origin=origin, ssl=context)
            assert refused.status == 403, origin
    assert wsauth.counters == {"accepted": 1, "origin_forbidden": 2}


@pytest.mark.parametrize(
    "sanic_proxy_settings", [False, True], ids=["no-settings", "proxies-count"]
)
async def test_same_origin_behind_a_tls_proxy_trusted_by_uvicorn(
    secret: str, app_name: str, sanic_proxy_settings: bool
) -> None:
    """uvicorn with --proxy-headers turns X-Forwarded-Proto into the scope's
    scheme: an https page behind the proxy is same-origin, with or without
    Sanic's own proxy settings (which read no proto here: PROXIES_COUNT alone)."""
    app, wsauth = _app(app_name, secret)
    if sanic_proxy_settings:
        app.config.PROXIES_COUNT = 1
        app.config.REAL_IP_HEADER = "x-real-ip"
    proxy: dict[str, Any] = {"proxy_headers": True, "forwarded_allow_ips": "127.0.0.1"}
    async with uvicorn_server(app, **proxy) as host:
        url = f"ws://{host}/ws?token="
        for proto, origin, status in (
            ("https", f"https://{host}", 101),
            ("http", f"http://{host}", 101),
            ("https", f"http://{host}", 403),
            ("http", f"https://{host}", 403),
        ):
            result = await handshake(
                url + wsauth.issue("alice"), origin=origin, headers={"X-Forwarded-Proto": proto}
            )
            assert result.status == status, (proto, origin)


async def test_a_plain_request_to_a_socket_route_does_not_spend_the_ticket(
    secret: str, app_name: str
) -> None:
    """Under ASGI a plain GET arrives as an http scope, which cannot upgrade:
    400 bad_handshake before the claim, as on Sanic's own server. uvicorn's
    access log line for it, ticket redacted, is written (its formatter reads
    the record's arguments, which the redaction keeps)."""
    from uvicorn.logging import AccessFormatter

    app, wsauth = _app(app_name, secret)
    lines: list[str] = []
    errors: list[BaseException] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            try:
                lines.append(self.format(record))
            except Exception as exc:  # noqa: BLE001 - the test reports it
                errors.append(exc)

    keep = Keep()
    keep.setFormatter(AccessFormatter("%(request_line)s %(status_code)s", use_colors=False))
    access = logging.getLogger("uvicorn.access")
    async with uvicorn_server(app, log_level="info") as host:
        access.addHandler(keep)
        try:
            ticket = wsauth.issue("alice")
            status, body = await asyncio.to_thread(_plain_get, f"http://{host}/ws?token={ticket}")
            assert (status, json.loads(body)) == (400, {"error": "bad_handshake"})
            ok = await handshake(f"ws://{host}/ws?token={ticket}")
            assert ok.status == 101 and ok.reply == "alice: ping"
        finally:
            access.removeHandler(keep)
    assert errors == []
    assert "GET /ws?token=[redacted] HTTP/1.1 400 Bad Request" in lines, lines


async def test_a_socket_to_a_plain_route_is_claimed_once(secret: str, app_name: str) -> None:
    """A websocket to a plain route spends its ticket (the guard cannot know
    that the route will not upgrade); behind ASGI, Sanic then fails to send the
    route's HTTP response on the websocket scope and runs request middleware
    again from its error handler: the guard does not claim a second time (a
    false replay in the counters and the rejected signal)."""
    app, wsauth = _app(app_name, secret)
    rejected: list[str] = []

    @app.get("/health")
    async def health(request: Request) -> Any:
        return text("ok")

    @app.signal("wsauth.ticket.rejected")
    async def on_rejected(request: Request, reason: str) -> None:
        rejected.append(reason)

    async with uvicorn_server(app) as host:
        result = await handshake(f"ws://{host}/health?token={wsauth.issue('alice')}")
        assert result.status != 101
        await asyncio.sleep(0.2)  # signal handlers run in the background
    assert wsauth.counters == {"accepted": 1}
    assert rejected == []


def _plain_get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=LIVENESS) as response:  # noqa: S310 - http://127.0.0.1
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


async def test_uvicorns_own_log_lines_hold_no_ticket(secret: str, app_name: str) -> None:
    """uvicorn logs each websocket request line on its own loggers, which do not
    propagate to the root logger: the redaction must sit on them too."""
    app, wsauth = _app(app_name, secret)
    lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(self.format(record))

    keep = Keep()
    async with uvicorn_server(app, log_level="info") as host:
        logger = logging.getLogger("uvicorn.error")
        logger.addHandler(keep)
        try:
            ticket = wsauth.issue("alice")
            # Refused for its origin, the ticket is not spent: still usable,
            # which is why it must not be in a log file.
            refused = await handshake(
                f"ws://{host}/ws?token={ticket}", origin="https://evil.example"
            )
            assert refused.status == 403
            ok = await handshake(f"ws://{host}/ws?token={ticket}")
            assert ok.status == 101
        finally:
            logger.removeHandler(keep)
    text = "\n".join(lines)
    assert '"WebSocket /ws?token=[redacted]" 403' in text, text  # uvicorn did log them
    assert '"WebSocket /ws?token=[redacted]" [accepted]' in text, text
    assert not any(ticket[i : i + 9] in text for i in range(len(ticket) - 8))


async def test_refusal_without_the_response_extension(secret: str, app_name: str) -> None:
    """An ASGI server without ``websocket.http.response`` gets a close (it sends 403)."""
    app, wsauth = _app(app_name, secret)
    # Play the ASGI server: lifespan start-up, one websocket scope, shutdown.
    lifespan_in: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    lifespan_out: asyncio.Queue[MutableMapping[str, Any]] = asyncio.Queue()
    await lifespan_in.put({"type": "lifespan.startup"})
    lifespan = asyncio.create_task(
        app({"type": "lifespan", "asgi": {"version": "3.0"}}, lifespan_in.get, lifespan_out.put)
    )
    started = await asyncio.wait_for(lifespan_out.get(), LIVENESS)
    assert started["type"] == "lifespan.startup.complete", started

    sent: list[MutableMapping[str, Any]] = []
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    await inbox.put({"type": "websocket.connect"})

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "websocket",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "scheme": "ws",
        "path": "/ws",
        "raw_path": b"/ws",
        "query_string": b"token=junk",
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1")],
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 80),
        "subprotocols": [],
        "extensions": {},
    }
    await asyncio.wait_for(app(scope, inbox.get, send), LIVENESS)
    await lifespan_in.put({"type": "lifespan.shutdown"})
    await asyncio.wait_for(lifespan, LIVENESS)
    assert sent == [{"type": "websocket.close", "code": 1008}]
    assert wsauth.counters == {"malformed": 1}


async def test_age_cap_and_refresh(secret: str, app_name: str) -> None:
    app, wsauth = _app(app_name, secret, max_connection_age=1.5, refresh=True)
    async with uvicorn_server(app) as host:
        async with connect(f"ws://{host}/ws?token={wsauth.issue('alice')}") as ws:
            await asyncio.sleep(1.0)
            await ws.send(json.dumps({"type": "wsauth.refresh", "token": wsauth.issue("alice")}))
            assert json.loads(await ws.recv()) == {"type": "wsauth.refreshed", "expires_in": 1.5}
            await asyncio.sleep(1.0)  # past the first cap
            await ws.send("still here")
            assert await ws.recv() == "alice: still here"
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), LIVENESS)
        assert closed.value.rcvd is not None
        assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (4001, "connection_age")

        async with connect(f"ws://{host}/ws?token={wsauth.issue('alice')}") as ws:
            await ws.send(json.dumps({"type": "wsauth.refresh", "token": wsauth.issue("eve")}))
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), LIVENESS)
        assert closed.value.rcvd is not None
        assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (4003, "subject_mismatch")
    assert wsauth.counters["refreshed"] == 1
    assert wsauth.counters["connection_age"] == 1
    assert wsauth.counters["subject_mismatch"] == 1
