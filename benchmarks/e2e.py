"""End to end: real Sanic servers in subprocesses, load from client processes.

For each worker count, every configuration gets a server of its own
(ephemeral ports on 127.0.0.1), and every configuration runs once per round,
the order rotating from round to round, so that drift on a shared machine
hits all of them. Own servers, because Sanic keeps each closed websocket's
connection objects for up to 30 s (its first timeout check): on a shared
server, one configuration's leftovers would weigh on another's collector.
A second no-auth server (``public-b``) is an A/A control: its ratio to the
first shows how far two identical servers stray apart in this run.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .load import ClientPool, Job, JobResult
from .server import API_KEY_ENV, PREFIX_ENV, REDIS_ENV, SECRET_ENV, TIMEOUT_ENV, VARIANT_ENV
from .timing import median, percentile

__all__ = ["CONFIGS", "E2EConfig", "E2EResult", "cpu_seconds", "run_e2e"]

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class E2EConfig:
    """One measured configuration: a server variant under one kind of load."""

    name: str
    server: str  # variant of benchmarks.server
    mode: str  # "handshake" or "issue_connect"
    tickets: str  # "ours", "seed" or "none"
    label: str
    needs_redis: bool = False


CONFIGS: tuple[E2EConfig, ...] = (
    E2EConfig("public", "public", "handshake", "none", "no auth (@public route)"),
    # The A/A control: a second, identical no-auth server measured like the rest.
    # Its ratio to the first should be 1; how far it strays is the resolution of
    # the run on this machine.
    E2EConfig("public-b", "public", "handshake", "none", "no auth, a second server (A/A control)"),
    E2EConfig("memory", "memory", "handshake", "ours", "ours, memory store"),
    E2EConfig("redis", "redis", "handshake", "ours", "ours, Redis store", True),
    E2EConfig("seed", "seed", "handshake", "seed", "seed: GETDEL in Redis", True),
    E2EConfig("issue+memory", "memory", "issue_connect", "ours", "issue-then-connect, ours memory"),
    E2EConfig(
        "issue+redis", "redis", "issue_connect", "ours", "issue-then-connect, ours Redis", True
    ),
    E2EConfig(
        "issue+seed", "seed", "issue_connect", "seed", "issue-then-connect, seed Redis", True
    ),
)


@dataclass
class E2EResult:
    """Per worker count and configuration: throughput by round, all latencies."""

    throughput: dict[str, list[float]] = field(default_factory=dict)
    server_cpu: dict[str, list[float]] = field(default_factory=dict)
    client_cpu: dict[str, list[float]] = field(default_factory=dict)
    latencies: dict[str, list[float]] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    error_samples: dict[str, list[str]] = field(default_factory=dict)
    cycles: dict[str, int] = field(default_factory=dict)

    def add(self, key: str, result: JobResult, server_cpu: float) -> None:
        self.throughput.setdefault(key, []).append(result.throughput)
        cycles = max(1, result.cycles)
        self.server_cpu.setdefault(key, []).append(server_cpu / cycles)
        self.client_cpu.setdefault(key, []).append(result.client_cpu / cycles)
        self.latencies.setdefault(key, []).extend(result.latencies)
        self.errors[key] = self.errors.get(key, 0) + result.errors
        self.cycles[key] = self.cycles.get(key, 0) + result.cycles
        samples = self.error_samples.setdefault(key, [])
        samples.extend(result.error_samples[: max(0, 5 - len(samples))])

    def summary(self, key: str) -> dict[str, Any]:
        lat = self.latencies.get(key, [])
        return {
            "cycles_per_s": median(self.throughput.get(key, [])),
            "rounds_cycles_per_s": self.throughput.get(key, []),
            "p50_ms": percentile(lat, 0.50) * 1e3,
            "p99_ms": percentile(lat, 0.99) * 1e3,
            "server_cpu_us_per_cycle": median(self.server_cpu.get(key, [])) * 1e6,
            "rounds_server_cpu_us_per_cycle": [v * 1e6 for v in self.server_cpu.get(key, [])],
            "client_cpu_us_per_cycle": median(self.client_cpu.get(key, [])) * 1e6,
            "cycles": self.cycles.get(key, 0),
            "errors": self.errors.get(key, 0),
            "error_samples": self.error_samples.get(key, []),
        }


_TICK = os.sysconf("SC_CLK_TCK")


def _descendants(root: int) -> list[int]:
    """``root`` and every process below it (Sanic's workers), from ``/proc``."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    fields = stat.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            parents[int(entry)] = int(fields[1])
    found, frontier = [root], [root]
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, ppid in parents.items() if ppid == parent]
        found += children
        frontier += children
    return found


def cpu_seconds(pids: Sequence[int]) -> float:
    """User plus system CPU time consumed so far by ``pids`` (Linux ``/proc``)."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / _TICK


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_ready(port: int, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"benchmark server exited with {proc.returncode}")
        try:
            url = f"http://127.0.0.1:{port}/health"
            with urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310 - loopback
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"benchmark server on port {port} not ready in {timeout}s")


def _stop(proc: subprocess.Popen[bytes], *, signalled: bool = False) -> None:
    # One SIGTERM only: Sanic's manager treats a second one as "shutdown
    # interrupted" and SIGKILLs its workers' whole process group.
    if proc.poll() is None:
        if not signalled:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def servers(
    variants: Mapping[str, str],
    *,
    workers: int,
    env: dict[str, str],
    log_dir: Path | None,
    single_process: bool = False,
) -> Iterator[dict[str, tuple[int, list[int]]]]:
    """Start a server for each ``{name: variant}``; yield ``{name: (port, pids)}``.

    Stopped by PID (SIGTERM, then SIGKILL after 20 s) on the way out.
    """
    started: list[tuple[subprocess.Popen[bytes], Any]] = []
    ports: dict[str, int] = {}
    try:
        for name, variant in variants.items():
            port = _free_port()
            log: Any = subprocess.DEVNULL
            if log_dir is not None:
                log = open(log_dir / f"server-{name}-w{workers}.log", "wb")  # noqa: SIM115
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "benchmarks.serve",
                    "--port",
                    str(port),
                    "--workers",
                    str(workers),
                    *(["--single-process"] if single_process else []),
                ],
                cwd=ROOT,
                env={**os.environ, **env, VARIANT_ENV: variant},
                # Its own process group: Sanic may SIGKILL its workers' group.
                start_new_session=True,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            started.append((proc, log))
            ports[name] = port
        for (proc, _), port in zip(started, ports.values(), strict=True):
            _wait_ready(port, proc)
        yield {
            name: (port, _descendants(proc.pid))
            for (proc, _), (name, port) in zip(started, ports.items(), strict=True)
        }
    finally:
        for proc, _ in started:  # all at once: graceful shutdowns overlap
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc, log in started:
            _stop(proc, signalled=True)
            if log is not subprocess.DEVNULL:
                log.close()


def run_e2e(
    *,
    quick: bool,
    rounds: int,
    workers: Sequence[int],
    redis_url: str | None,
    prefix: str,
    secret: str,
    clients: int = 2,
    concurrency: int = 4,
    cycles: int | None = None,
    log_dir: Path | None = None,
    progress: Any = None,
    only: Sequence[str] | None = None,
    sanic_timeout: float | None = None,
) -> tuple[dict[int, E2EResult], list[str]]:
    """Run every configuration for each worker count; return results and notes."""
    notes: list[str] = []
    wanted = [c for c in CONFIGS if only is None or c.name in only]
    configs = [c for c in wanted if redis_url or not c.needs_redis]
    if len(configs) < len(wanted):
        notes.append("Redis unavailable: Redis configurations skipped")
    per_client = cycles if cycles is not None else (15 if quick else 250)
    api_key = "bench-" + secret[:16]
    env = {SECRET_ENV: secret, API_KEY_ENV: api_key, PREFIX_ENV: prefix}
    if redis_url:
        env[REDIS_ENV] = redis_url
    if sanic_timeout:
        env[TIMEOUT_ENV] = str(sanic_timeout)
    variants = {c.name: c.server for c in configs}
    results: dict[int, E2EResult] = {}
    pool = ClientPool(clients)
    try:
        for count in workers:
            result = E2EResult()
            single = quick and count == 1
            with servers(
                variants, workers=count, env=env, log_dir=log_dir, single_process=single
            ) as running:

                def job(config: E2EConfig, n: int, *, _running: Any = running) -> Job:
                    return Job(
                        mode=config.mode,
                        tickets=config.tickets,
                        port=_running[config.name][0],
                        cycles=n,
                        concurrency=concurrency,
                        secret=secret,
                        api_key=api_key,
                        redis_url=redis_url,
                        prefix=prefix,
                    )

                for config in [] if quick else configs:  # warm-up: imports, pools
                    pool.run(job(config, max(2, per_client // 10)))
                for index in range(rounds):
                    shift = index % len(configs)
                    for config in configs[shift:] + configs[:shift]:
                        pids = running[config.name][1]
                        before = cpu_seconds(pids)
                        done = pool.run(job(config, per_client))
                        result.add(config.name, done, cpu_seconds(pids) - before)
                    if progress is not None:
                        progress(f"e2e workers={count} round {index + 1}/{rounds}")
            results[count] = result
    finally:
        pool.close()
    return results, notes
