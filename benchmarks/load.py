"""Client load from separate processes: complete websocket cycles.

One cycle is connect (the handshake), send ``ping``, receive the echo, close,
with the real ``websockets.asyncio.client``. In ``handshake`` mode tickets are
issued before the timed window (ours with :class:`TicketIssuer`, the seed's
with ``SET ... EX`` in one pipeline), so the window holds handshakes only; in
``issue_connect`` mode every cycle first POSTs for a ticket over a kept-alive
HTTP/1.1 connection. Processes start the window together (a barrier) and
report their own monotonic start and end (one clock across processes).
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import multiprocessing.connection
import threading
import time
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ClientPool", "Job", "JobResult", "client_loop"]


@dataclass(frozen=True)
class Job:
    """One timed window of load."""

    mode: str  # "handshake" or "issue_connect"
    tickets: str  # "ours", "seed" or "none": what to pre-issue in handshake mode
    port: int
    cycles: int  # per client process
    concurrency: int  # per client process
    secret: str
    api_key: str
    redis_url: str | None = None
    prefix: str = ""
    path: str = "/ws"


@dataclass
class JobResult:
    """Every process's window and every cycle's latency (seconds)."""

    starts: list[float] = field(default_factory=list)
    ends: list[float] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    client_cpu: float = 0.0
    error_samples: list[str] = field(default_factory=list)

    @property
    def cycles(self) -> int:
        return len(self.latencies)

    @property
    def wall(self) -> float:
        return max(self.ends) - min(self.starts) if self.starts else float("nan")

    @property
    def throughput(self) -> float:
        return self.cycles / self.wall if self.starts else float("nan")


def _prepare(job: Job) -> list[str | None]:
    if job.mode != "handshake" or job.tickets == "none":
        return [None] * job.cycles
    if job.tickets == "ours":
        from sanic_wsauth.tokens import TicketIssuer

        issuer = TicketIssuer(job.secret)
        from .server import SUBJECT

        return [issuer.issue(SUBJECT) for _ in range(job.cycles)]
    import uuid

    import redis

    from .seed import SEED_TTL
    from .server import SUBJECT

    tokens = [str(uuid.uuid4()) for _ in range(job.cycles)]
    client = redis.Redis.from_url(job.redis_url or "")
    try:
        pipe = client.pipeline(transaction=False)
        for token in tokens:
            pipe.set(job.prefix + "seed:" + token, SUBJECT, ex=SEED_TTL)
        pipe.execute()
    finally:
        client.close()
    return list(tokens)


class _Http:
    """A minimal kept-alive HTTP/1.1 client for ``POST /authenticate/token``."""

    def __init__(self, port: int, api_key: str) -> None:
        self.port = port
        self.request = (
            "POST /authenticate/token HTTP/1.1\r\n"
            f"Host: 127.0.0.1:{port}\r\n"
            f"Authorization: Bearer {api_key}\r\n"
            "Content-Length: 0\r\n\r\n"
        ).encode()
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def token(self) -> str:
        if self.writer is None or self.writer.is_closing():
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        assert self.reader is not None
        self.writer.write(self.request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = 0
        close = False
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"connection" and value.strip().lower() == b"close":
                close = True
        body = await self.reader.readexactly(length)
        if close:
            await self.close()
        if status != 200:
            raise RuntimeError(f"token endpoint answered {status}")
        token: str = json.loads(body)["token"]
        return token

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            try:
                await self.writer.wait_closed()
            except OSError:
                pass
            self.writer = None


async def _run(job: Job, tickets: list[str | None]) -> tuple[list[float], int, list[str]]:
    from websockets.asyncio.client import connect

    base = f"ws://127.0.0.1:{job.port}{job.path}"
    queue = iter(tickets)
    latencies: list[float] = []
    errors: list[str] = []

    async def worker() -> None:
        http = _Http(job.port, job.api_key) if job.mode == "issue_connect" else None
        try:
            for ticket in queue:
                start = time.perf_counter()
                try:
                    if http is not None:
                        ticket = await http.token()
                    url = base if ticket is None else f"{base}?token={ticket}"
                    async with connect(url, compression=None, open_timeout=10) as ws:
                        await ws.send("ping")
                        await ws.recv()
                except Exception as exc:  # noqa: BLE001 - counted and reported
                    errors.append(f"{type(exc).__name__}: {exc}"[:200])
                    if http is not None:
                        await http.close()
                    continue
                latencies.append(time.perf_counter() - start)
        finally:
            if http is not None:
                await http.close()

    await asyncio.gather(*(worker() for _ in range(job.concurrency)))
    return latencies, len(errors), errors[:5]


def client_loop() -> asyncio.AbstractEventLoop:
    """A client process's one event loop (uvloop, as Sanic's servers use), set as current."""
    loop: asyncio.AbstractEventLoop
    try:
        import uvloop

        loop = uvloop.new_event_loop()
    except ImportError:  # pragma: no cover - uvloop comes with Sanic on Linux
        loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    return loop


def _client_main(conn: multiprocessing.connection.Connection, barrier: Any) -> None:
    loop = client_loop()
    while True:
        job: Job | None = conn.recv()
        if job is None:
            break
        try:
            tickets = _prepare(job)
        except Exception as exc:  # noqa: BLE001 - reported to the parent
            barrier.abort()
            conn.send(("error", f"{type(exc).__name__}: {exc}"))
            continue
        try:
            barrier.wait(timeout=120)
        except threading.BrokenBarrierError:
            conn.send(("error", "another client process failed"))
            continue
        start, cpu = time.monotonic(), time.process_time()
        latencies, errors, samples = loop.run_until_complete(_run(job, tickets))
        end, cpu = time.monotonic(), time.process_time() - cpu
        conn.send(("ok", (start, end, cpu, latencies, errors, samples)))
    loop.close()


class ClientPool:
    """``processes`` long-lived client processes that run jobs together."""

    def __init__(self, processes: int) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._ctx = ctx
        self.processes = processes
        self._barrier = ctx.Barrier(processes)
        self._conns: list[multiprocessing.connection.Connection] = []
        self._procs: list[Any] = []
        for _ in range(processes):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_client_main, args=(child, self._barrier), daemon=True)
            proc.start()
            child.close()
            self._conns.append(parent)
            self._procs.append(proc)

    def run(self, job: Job) -> JobResult:
        """Run ``job`` in every process at once; return the merged result."""
        for conn in self._conns:
            conn.send(job)
        result = JobResult()
        failures: list[str] = []
        for conn in self._conns:
            status, payload = conn.recv()
            if status != "ok":
                failures.append(payload)
                continue
            start, end, cpu, latencies, errors, samples = payload
            result.client_cpu += cpu
            result.starts.append(start)
            result.ends.append(end)
            result.latencies.extend(latencies)
            result.errors += errors
            result.error_samples.extend(samples)
        if failures:
            self._barrier.reset()
            raise RuntimeError("client process failed: " + "; ".join(failures))
        return result

    def close(self) -> None:
        for conn in self._conns:
            try:
                conn.send(None)
            except OSError:
                pass
        for proc in self._procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.terminate()
                proc.join(timeout=5)
        for conn in self._conns:
            conn.close()
