"""One-time tickets across workers and hosts: real demo processes sharing Redis.

Each "host" is a separate ``python -m sanic_wsauth demo --workers 2`` process
with the same secret and Redis URL. Every ticket is sent K times at once,
spread over every worker of every host; Sanic's access log (one line per
request, tagged with its worker) shows which worker answered. Key rotation
across hosts runs four real servers in this process, sharing one Redis.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import AsyncExitStack, ExitStack
from pathlib import Path
from typing import Any

import pytest
from sanic import Sanic

from sanic_wsauth import WSAuth

from ._support import (
    Handshake,
    Served,
    echo_subject,
    fetch_ticket,
    free_port,
    handshake,
    new_secret,
    post_token,
    run_demo,
    serve,
)
from .redis_support import RedisServer, count_keys, within

API_KEY = "scaling-test-api-key"
N, K = 20, 5
#: A generous bound per handshake: catches a hang, not a slow machine.
LIVENESS = 15.0
#: max_age 30 + leeway 5 + margin 5 (the defaults), in milliseconds.
ENTRY_TTL_MS = 40_000

#: Sanic's access log: "Srv 1|... GET ws://host/ws?token=[redacted] 401 ..." for a
#: refusal, "Srv 0|... \N{ELECTRIC PLUG} ws://host/ws?token=[redacted]" when a socket opens.
_REFUSED = re.compile(r"^(Srv \d+)\|.* GET ws://\S+/ws\?\S* (\d{3}) ", re.MULTILINE)
_OPENED = re.compile(r"^(Srv \d+)\|.* \N{ELECTRIC PLUG} ws://\S+/ws\?\S*[ \t]*$", re.MULTILINE)


def demo_env(secret: str, redis_url: str, prefix: str, timeout: str = "5") -> dict[str, str]:
    return {
        "WSAUTH_SECRET": secret,
        "WSAUTH_DEMO_API_KEY": API_KEY,
        "WSAUTH_REDIS_URL": redis_url,
        # Sanic loads SANIC_* variables into app.config: WSAUTH_REDIS_PREFIX.
        "SANIC_WSAUTH_REDIS_PREFIX": prefix,
        # Storms of 100 simultaneous handshakes on a busy 2-core machine can
        # starve a worker's event loop past the 0.25 s default; these tests
        # are about exactly-once answers (the fault test sets its own).
        "SANIC_WSAUTH_REDIS_TIMEOUT": timeout,
    }


async def get_tickets(base: str, n: int) -> list[str]:
    async def one() -> str:
        status, body, _ = await asyncio.to_thread(post_token, base, api_key=API_KEY)
        assert status == 200, body
        token: str = body["token"]
        return token

    return list(await asyncio.gather(*(one() for _ in range(n))))


async def send_all(urls: Sequence[str]) -> list[Handshake]:
    """Open every socket at once; each answer must come within LIVENESS."""
    return list(await asyncio.gather(*(handshake(u, timeout=LIVENESS) for u in urls)))


def ws_lines(log: Path) -> list[tuple[str, int]]:
    """(worker, status) of every /ws request in a demo's access log."""
    text = log.read_text(errors="replace")
    return [(w, int(s)) for w, s in _REFUSED.findall(text)] + [
        (w, 101) for w in _OPENED.findall(text)
    ]


def assert_clean_log(log: Path, tokens: Sequence[str]) -> None:
    text = log.read_text(errors="replace")
    assert "Traceback" not in text, text[-3000:]
    assert not any(t in text for t in tokens), "a ticket reached the log"


@pytest.fixture
def logs(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path


async def _replay_storm(hosts: Sequence[str], redis_url: str, prefix: str) -> list[str]:
    """N fresh tickets, each sent K times at once, spread over ``hosts``.

    Asserts that exactly one of each ticket's K handshakes was accepted.
    """
    tickets = await get_tickets(f"http://{hosts[0]}", N // 2)
    tickets += await get_tickets(f"http://{hosts[-1]}", N - N // 2)
    urls = [
        f"ws://{hosts[(i + j) % len(hosts)]}/ws?token={t}"
        for j in range(K)
        for i, t in enumerate(tickets)
    ]
    results = await send_all(urls)
    statuses = Counter(r.status for r in results)
    assert statuses == {101: N, 401: N * (K - 1)}, statuses
    per_ticket = Counter(
        urls[i].rpartition("=")[2] for i, r in enumerate(results) if r.status == 101
    )
    assert sorted(per_ticket) == sorted(tickets) and set(per_ticket.values()) == {1}
    assert all(r.reply == "demo: ping" for r in results if r.status == 101)
    assert all(json.loads(r.body) == {"error": "replayed"} for r in results if r.status == 401)
    return tickets


async def _storm_until_spread(
    hosts: Sequence[str], host_logs: Sequence[Path], redis_url: str, prefix: str
) -> tuple[list[str], int]:
    """Run storms until every worker of every host has answered handshakes.

    Which worker accepts a connection is the kernel's choice; on a busy
    machine one worker can take a whole burst, which would not test sharing
    across workers. Each storm is checked on its own; at most 4 are run.
    Returns every ticket sent and the number of storms.
    """
    tickets: list[str] = []
    for storm in range(1, 5):
        tickets += await _replay_storm(hosts, redis_url, prefix)
        by_host = await _wait_for_lines(host_logs, storm * N * K)
        if all({w for w, _ in lines} == {"Srv 0", "Srv 1"} for lines in by_host):
            return tickets, storm
    pytest.fail(f"after 4 storms some worker never answered: {by_host}")


async def _wait_for_lines(host_logs: Sequence[Path], total: int) -> list[list[tuple[str, int]]]:
    # A worker writes its access line just after it answers: allow it a moment.
    async with within(LIVENESS):
        while True:
            by_host = [ws_lines(p) for p in host_logs]
            if sum(len(lines) for lines in by_host) >= total:
                return by_host
            await asyncio.sleep(0.05)


def _assert_entries(redis_url: str, prefix: str, count: int) -> None:
    keys = count_keys(redis_url, prefix)
    assert len(keys) == count  # one entry per ticket, keyed on its jti
    assert all(0 < ttl <= ENTRY_TTL_MS for ttl in keys.values()), keys


@pytest.mark.redis
@pytest.mark.slow
async def test_one_host_two_workers_accept_each_ticket_once(
    redis_url: str, key_prefix: str, logs: Path
) -> None:
    log = logs / "host.log"
    # This host gets its Redis from the command line (`demo --redis URL`).
    env = {**demo_env(new_secret(), redis_url, key_prefix), "WSAUTH_REDIS_URL": ""}
    args = ["--redis", redis_url]
    with run_demo(workers=2, env=env, args=args, log_path=str(log)) as (_proc, port):
        tickets, storms = await _storm_until_spread(
            [f"127.0.0.1:{port}"], [log], redis_url, key_prefix
        )
    _assert_entries(redis_url, key_prefix, storms * N)
    lines = ws_lines(log)
    assert Counter(s for _, s in lines) == {101: storms * N, 401: storms * N * (K - 1)}
    assert_clean_log(log, tickets)
    assert "per worker" not in log.read_text()  # shared store: no memory warning


@pytest.mark.redis
@pytest.mark.slow
async def test_two_hosts_two_workers_each_accept_each_ticket_once(
    redis_url: str, key_prefix: str, logs: Path
) -> None:
    env = demo_env(new_secret(), redis_url, key_prefix)
    host_logs = [logs / "host-a.log", logs / "host-b.log"]
    with ExitStack() as stack:
        ports = [
            stack.enter_context(run_demo(workers=2, env=env, log_path=str(p)))[1] for p in host_logs
        ]
        hosts = [f"127.0.0.1:{p}" for p in ports]
        tickets, storms = await _storm_until_spread(hosts, host_logs, redis_url, key_prefix)
    _assert_entries(redis_url, key_prefix, storms * N)
    by_host = [ws_lines(p) for p in host_logs]
    assert all(lines for lines in by_host)
    statuses = Counter(s for lines in by_host for _, s in lines)
    assert statuses == {101: storms * N, 401: storms * N * (K - 1)}
    for p in host_logs:
        assert_clean_log(p, tickets)


@pytest.mark.redis
@pytest.mark.slow
async def test_redis_failure_mid_run_fails_closed_and_recovers_without_restart(
    private_redis: RedisServer, logs: Path
) -> None:
    log = logs / "host.log"
    prefix = "wsauth:fault:"
    env = demo_env(new_secret(), private_redis.url, prefix, timeout="2")
    with run_demo(workers=2, env=env, log_path=str(log)) as (proc, port):
        base, ws = f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}"
        everything: list[str] = []

        async def phase(n: int) -> list[Handshake]:
            tickets = await get_tickets(base, n)
            everything.extend(tickets)
            return await send_all([f"{ws}/ws?token={t}" for t in tickets])

        up = await phase(6)
        assert [r.status for r in up] == [101] * 6

        private_redis.pause()  # stalled: connections hang, claims time out
        try:
            stalled = await phase(10)
        finally:
            private_redis.resume()
        private_redis.kill()  # down: connections refused
        down = await phase(10)
        for r in stalled + down:
            assert r.status == 503, (r.status, r.body)
            assert json.loads(r.body) == {"error": "store_unavailable"}

        private_redis.start(port=private_redis.port)  # same port, same demo process
        again = await phase(10)
        assert [r.status for r in again] == [101] * 10
        assert all(r.reply == "demo: ping" for r in again)
        assert proc.poll() is None  # never restarted
    lines = ws_lines(log)
    assert Counter(s for _, s in lines) == {101: 16, 503: 20}  # no 500, nothing else
    assert_clean_log(log, everything)


@pytest.mark.slow
def test_unusable_redis_url_stops_start_up_before_any_worker() -> None:
    env = {
        **os.environ,
        "WSAUTH_SECRET": new_secret(),
        "WSAUTH_DEMO_API_KEY": API_KEY,
        "WSAUTH_REDIS_URL": "",
    }
    cmd = [sys.executable, "-m", "sanic_wsauth", "demo", "--workers", "2"]
    cmd += ["--port", str(free_port()), "--redis", "localhost:6379"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert "the Redis URL must start with redis://, rediss:// or unix://" in done.stderr
    assert "Starting worker" not in done.stderr + done.stdout
    assert "Traceback" not in done.stderr + done.stdout


@pytest.mark.slow
async def test_memory_store_under_several_workers_warns_at_start_up(logs: Path) -> None:
    log = logs / "host.log"
    env = {"WSAUTH_SECRET": new_secret(), "WSAUTH_DEMO_API_KEY": API_KEY, "WSAUTH_REDIS_URL": ""}
    with run_demo(workers=2, env=env, log_path=str(log)):
        pass
    text = log.read_text()
    assert "in-memory replay store is per worker" in text, text
    assert "WSAUTH_REDIS_URL" in text


def _host(
    name: str, secret: str, verify: list[str], redis_url: str, prefix: str
) -> Sanic[Any, Any]:
    app: Sanic[Any, Any] = Sanic(name)
    app.config.WEBSOCKET_PING_INTERVAL = None
    WSAuth(
        app,
        secret_keys=secret,
        verify_secrets=verify,
        redis_url=redis_url,
        redis_prefix=prefix,
        redis_timeout=5,
        authenticate=lambda request: "alice",
    )

    app.add_websocket_route(echo_subject, "/ws")
    return app


async def _use(srv: Served, token: str) -> tuple[int, str | None]:
    got = await handshake(f"{srv.ws}/ws?token={token}", timeout=LIVENESS)
    return got.status, (json.loads(got.body)["error"] if got.status != 101 else got.reply)


@pytest.mark.redis
async def test_key_rotation_across_hosts_keeps_tickets_working_and_single_use(
    app_name: str, redis_url: str, key_prefix: str
) -> None:
    old, new = new_secret(), new_secret()
    async with AsyncExitStack() as stack:
        # Mid-rollout of step 2: one host switched, one not yet (both taught).
        switched = await stack.enter_async_context(
            serve(_host(f"{app_name}_switched", new, [old], redis_url, key_prefix))
        )
        pending = await stack.enter_async_context(
            serve(_host(f"{app_name}_pending", old, [new], redis_url, key_prefix))
        )
        # A host that skipped step 1 (never taught the new key).
        untaught = await stack.enter_async_context(
            serve(_host(f"{app_name}_untaught", old, [], redis_url, key_prefix))
        )
        # Step 3 done: the old key retired.
        retired = await stack.enter_async_context(
            serve(_host(f"{app_name}_retired", new, [], redis_url, key_prefix))
        )

        signed_new, signed_old = await fetch_ticket(switched.http), await fetch_ticket(pending.http)
        assert await _use(pending, signed_new) == (101, "alice: ping")
        assert await _use(switched, signed_old) == (101, "alice: ping")
        for srv in (switched, pending):
            for token in (signed_new, signed_old):
                assert await _use(srv, token) == (401, "replayed")

        fresh_new, fresh_old = await fetch_ticket(switched.http), await fetch_ticket(pending.http)
        assert await _use(untaught, fresh_new) == (401, "bad_signature")
        assert await _use(retired, fresh_old) == (401, "bad_signature")
        # A refused ticket used up no replay entry: it still works once elsewhere.
        assert await _use(pending, fresh_new) == (101, "alice: ping")
        assert await _use(switched, fresh_old) == (101, "alice: ping")
        assert await _use(retired, fresh_new) == (401, "replayed")
    assert len(count_keys(redis_url, key_prefix)) == 4
