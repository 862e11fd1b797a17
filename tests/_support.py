"""Shared test helpers: real servers on 127.0.0.1, a real websocket client."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from ssl import SSLContext
from typing import Any

from sanic import Sanic
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

__all__ = [
    "Handshake",
    "Served",
    "free_port",
    "handshake",
    "new_secret",
    "post_token",
    "run_demo",
    "serve",
    "stop_process_group",
    "wait_for_port",
]


def new_secret() -> str:
    return secrets.token_urlsafe(48)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Served:
    """A Sanic app being served on 127.0.0.1 in this test's event loop."""

    app: Sanic[Any, Any]
    host: str
    port: int

    @property
    def _authority(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def http(self) -> str:
        return f"http://{self._authority}"

    @property
    def ws(self) -> str:
        return f"ws://{self._authority}"


@contextlib.asynccontextmanager
async def serve(
    app: Sanic[Any, Any], *, access_log: bool = False, host: str = "127.0.0.1"
) -> AsyncIterator[Served]:
    """Run ``app`` with its real protocol and lifecycle on an ephemeral port of ``host``.

    ``host`` may be ``"::1"``; the test is skipped where there is no IPv6 loopback.
    """
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    try:
        sock.bind((host, 0))
    except OSError:
        sock.close()
        import pytest

        pytest.skip(f"cannot listen on {host}")
    port = sock.getsockname()[1]
    server = await app.create_server(sock=sock, return_asyncio_server=True, access_log=access_log)
    assert server is not None
    await server.startup()
    await server.before_start()
    await server.start_serving()
    await server.after_start()
    try:
        yield Served(app, host, port)
    finally:
        await server.before_stop()
        closing = server.close()
        if closing is not None:
            await closing
        await server.after_stop()
        sock.close()


@dataclass
class Handshake:
    """The outcome of one handshake attempt."""

    status: int
    body: bytes
    headers: Mapping[str, str]  # names lower-cased
    reply: str | None = None
    subprotocol: str | None = None


async def handshake(
    url: str,
    *,
    send: str | None = "ping",
    origin: str | None = None,
    subprotocols: list[str] | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = 5.0,
    ssl: SSLContext | None = None,
) -> Handshake:
    """Open a websocket; return 101 (with one echo round-trip) or the refusal."""
    try:
        return await asyncio.wait_for(
            _handshake(url, send, origin, subprotocols, headers, timeout, ssl), timeout
        )
    except InvalidStatus as exc:
        response = exc.response
        return Handshake(
            response.status_code,
            bytes(response.body or b""),
            _lower(response.headers.raw_items()),
        )


async def _handshake(
    url: str,
    send: str | None,
    origin: str | None,
    subprotocols: list[str] | None,
    headers: Mapping[str, str] | None,
    timeout: float,
    ssl: SSLContext | None,
) -> Handshake:
    async with connect(
        url,
        origin=origin,  # type: ignore[arg-type]
        subprotocols=subprotocols,  # type: ignore[arg-type]
        additional_headers=headers,
        open_timeout=timeout,
        ssl=ssl,
    ) as ws:
        reply = None
        if send is not None:
            await ws.send(send)
            raw = await ws.recv()
            reply = raw if isinstance(raw, str) else raw.decode()
        assert ws.response is not None
        return Handshake(101, b"", _lower(ws.response.headers.raw_items()), reply, ws.subprotocol)


def _lower(items: Any) -> dict[str, str]:
    """Header names lower-cased (HTTP header names are case-insensitive)."""
    return {name.lower(): value for name, value in items}


async def open_socket(url: str, **kwargs: Any) -> ClientConnection:
    return await connect(url, **kwargs)


def post_token(
    base_url: str,
    *,
    api_key: str | None = None,
    path: str = "/authenticate/token",
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
) -> tuple[int, dict[str, Any], Mapping[str, str]]:
    """POST to the ticket endpoint with a plain HTTP client (no Sanic involved)."""
    import json

    all_headers = dict(headers or {})
    if api_key is not None:
        all_headers["Authorization"] = f"Bearer {api_key}"
    request = urllib.request.Request(  # noqa: S310 - http://127.0.0.1 only
        base_url + path, data=body or b"", method="POST", headers=all_headers
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return response.status, json.loads(response.read()), dict(response.headers)
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        return exc.code, json.loads(raw) if raw else {}, dict(exc.headers)


async def fetch_ticket(base_url: str, **kwargs: Any) -> str:
    """POST for a ticket (off the event loop) and return it; fail unless 200."""
    status, body, _ = await asyncio.to_thread(post_token, base_url, **kwargs)
    assert status == 200, body
    token: str = body["token"]
    return token


async def echo_subject(request: Any, ws: Any) -> None:
    """A websocket handler that echoes each message as ``<subject>: <message>``."""
    async for message in ws:
        await ws.send(f"{request.ctx.ticket.subject}: {message}")


def wait_for_port(host: str, port: int, *, timeout: float = 30.0, proc: Any = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited early with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://{host}:{port}/health", timeout=1) as r:  # noqa: S310
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing answered on {host}:{port} within {timeout}s")


def wait_for_workers(log: Path, n: int, *, timeout: float = 30.0) -> None:
    """Wait until a demo's log says ``n`` workers are ready (one may answer before the other)."""
    deadline = time.monotonic() + timeout
    while log.read_text(errors="replace").count("Worker ready") < n:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{n} workers did not become ready within {timeout}s")
        time.sleep(0.05)


def stop_process_group(proc: subprocess.Popen[Any], *, grace: float = 10.0) -> None:
    """Stop a server started with ``start_new_session=True``: SIGTERM, then SIGKILL.

    Sanic's main process can miss a SIGTERM that lands while it is still
    finishing start-up; the group kill then ends it and its workers (all of
    them processes this test started).
    """
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=grace)


@contextlib.contextmanager
def run_demo(
    *,
    workers: int = 1,
    env: Mapping[str, str] | None = None,
    args: list[str] | None = None,
    port: int | None = None,
    log_path: str | None = None,
    launcher: Sequence[str] = ("-m", "sanic_wsauth"),
) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """Start ``python -m sanic_wsauth demo`` in a subprocess; stop it by PID.

    ``launcher`` is what follows ``python`` and precedes the CLI's own arguments.
    """
    port = port or free_port()
    full_env = {**os.environ, **(env or {})}
    full_env.setdefault("WSAUTH_DEMO_API_KEY", "test-api-key")
    full_env.setdefault("WSAUTH_SECRET", new_secret())
    cmd = [
        sys.executable,
        *launcher,
        "demo",
        "--port",
        str(port),
        "--workers",
        str(workers),
        *(args or []),
    ]
    log = open(log_path, "wb") if log_path else subprocess.DEVNULL  # noqa: SIM115
    proc = subprocess.Popen(
        cmd, env=full_env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        wait_for_port("127.0.0.1", port, proc=proc)
        yield proc, port
    finally:
        stop_process_group(proc)
        if log_path:
            log.close()  # type: ignore[union-attr]
