"""Redis for the tests: the shared server at 127.0.0.1:6379, or a private one.

The shared server is used as is (each test writes under its own key prefix
and deletes its keys afterwards). Fault tests start their own ``redis-server``
on an ephemeral port, then pause (SIGSTOP), kill (SIGKILL) and restart it on
the same port, always by PID.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
import redis

from ._support import free_port

__all__ = [
    "REDIS_HINT",
    "SHARED_REDIS_URL",
    "RedisServer",
    "count_keys",
    "key_prefix",
    "private_redis",
    "redis_servers",
    "redis_url",
    "within",
]

#: The shared test Redis; WSAUTH_TEST_REDIS_URL points the suite elsewhere.
SHARED_REDIS_URL = os.environ.get("WSAUTH_TEST_REDIS_URL") or "redis://127.0.0.1:6379/0"
REDIS_HINT = (
    "Redis is not running at 127.0.0.1:6379; start it with "
    "`redis-server --daemonize yes --port 6379` or run .ci/run"
    if "WSAUTH_TEST_REDIS_URL" not in os.environ
    else f"Redis is not running at {SHARED_REDIS_URL} (WSAUTH_TEST_REDIS_URL)"
)
SERVER_HINT = "redis-server is not on PATH; install Redis (apt-get install redis-server)"


@contextlib.asynccontextmanager
async def within(seconds: float) -> AsyncIterator[None]:
    """Fail with TimeoutError if the block runs past ``seconds`` (a liveness bound)."""
    if sys.version_info >= (3, 11):
        async with asyncio.timeout(seconds):
            yield
        return
    task = asyncio.current_task()  # pragma: no cover - Python 3.10
    assert task is not None
    handle = asyncio.get_running_loop().call_later(seconds, task.cancel)
    try:
        yield
    except asyncio.CancelledError:
        raise TimeoutError(f"still running after {seconds} s") from None
    finally:
        handle.cancel()


def _skip_or_fail(reason: str) -> None:
    from .conftest import skip_or_fail

    skip_or_fail(reason)


def _answers(url: str) -> bool:
    client = redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()


def connected_clients(port: int) -> int:
    """Clients connected to the Redis on ``port``, not counting this query's own."""
    admin = redis.Redis(port=port, socket_timeout=5)
    try:
        return int(admin.info("clients")["connected_clients"]) - 1
    finally:
        admin.close()


def count_keys(url: str, prefix: str) -> dict[bytes, int]:
    """Every key under ``prefix`` with its remaining time to live (ms)."""
    client = redis.Redis.from_url(url, socket_timeout=5)
    try:
        return {key: int(client.pttl(key)) for key in client.scan_iter(match=prefix + "*")}
    finally:
        client.close()


@pytest.fixture
def redis_url() -> str:
    """The shared Redis at 127.0.0.1:6379; skips (fails in CI) when it is down."""
    if not _answers(SHARED_REDIS_URL):
        _skip_or_fail(REDIS_HINT)
    return SHARED_REDIS_URL


@pytest.fixture
def key_prefix() -> Iterator[str]:
    """A key prefix of this test's own; its keys are deleted afterwards."""
    prefix = f"wsauth:test:{uuid.uuid4().hex[:12]}:"
    yield prefix
    try:
        client = redis.Redis.from_url(SHARED_REDIS_URL, socket_timeout=2)
        try:
            keys = list(client.scan_iter(match=prefix + "*"))
            if keys:
                client.delete(*keys)
        finally:
            client.close()
    except (redis.RedisError, OSError):
        pass  # Redis is down (the test was skipped): nothing to clean.


class RedisServer:
    """A private ``redis-server`` process on an ephemeral port.

    Args:
        workdir: Directory for its files (log, cluster config).
        extra: More ``redis-server`` arguments (``--requirepass x``, ...).
    """

    def __init__(self, workdir: Path, *extra: str) -> None:
        self.workdir = workdir
        self.extra = extra
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.paused = False

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, *, port: int | None = None) -> None:
        """Start on ``port`` (the previous one when restarting) and wait for PONG."""
        for _attempt in range(5):
            self.port = port or self.port or free_port()
            log = open(self.workdir / f"redis-{self.port}.log", "ab")  # noqa: SIM115
            self.proc = subprocess.Popen(
                [
                    "redis-server",
                    "--port", str(self.port),
                    "--bind", "127.0.0.1",
                    "--save", "",
                    "--appendonly", "no",
                    "--dir", str(self.workdir),
                    *self.extra,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )  # fmt: skip
            log.close()
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and self.proc.poll() is None:
                if self._pong():
                    self.paused = False
                    return
                time.sleep(0.05)
            self._reap()
            if port is not None:
                break  # a restart must use the same port: do not wander off
            self.port = 0  # the port was taken meanwhile: try another
        raise RuntimeError(f"redis-server did not start on port {self.port}")

    def _pong(self) -> bool:
        # A bare PING: works before AUTH and on a cluster node.
        import socket

        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                reply = sock.recv(64)
        except OSError:
            return False
        return reply.startswith((b"+PONG", b"-NOAUTH"))

    def pause(self) -> None:
        """SIGSTOP: the port still accepts connections but nothing answers."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGCONT)
        self.paused = False

    def kill(self) -> None:
        """SIGKILL: connections drop and the port refuses new ones."""
        self._reap()

    def _reap(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.kill()  # also ends a stopped process
        proc.wait(timeout=10)
        self.paused = False


@pytest.fixture
def redis_servers(tmp_path: Path) -> Iterator[Callable[..., RedisServer]]:
    """Start private Redis servers (``redis_servers("--requirepass", "x")``).

    Every server started is killed by PID at the end of the test.
    """
    if shutil.which("redis-server") is None:
        _skip_or_fail(SERVER_HINT)
    started: list[RedisServer] = []

    def start(*extra: str) -> RedisServer:
        workdir = tmp_path / f"redis{len(started)}"
        workdir.mkdir()
        server = RedisServer(workdir, *extra)
        started.append(server)
        server.start()
        return server

    try:
        yield start
    finally:
        for server in started:
            server.kill()


@pytest.fixture
def private_redis(redis_servers: Callable[..., RedisServer]) -> RedisServer:
    """A started private Redis, killed by PID at the end of the test."""
    return redis_servers()
