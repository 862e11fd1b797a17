"""RedisReplayStore on real Redis: keys, expiry, client modes, real faults.

Faults are real: a private ``redis-server`` is paused with SIGSTOP (a stall:
the port accepts, nothing answers), killed with SIGKILL (refused), started
again on the same port, made to reply with errors (OOM, NOAUTH).
"""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from sanic import Sanic

from sanic_wsauth import ConfigurationError, StoreUnavailable, WSAuth
from sanic_wsauth.stores.redis import MIN_TTL_MS, RedisReplayStore
from sanic_wsauth.stores.resp import ReplyError

from ._support import echo_subject, fetch_ticket, free_port, handshake, serve
from .redis_support import RedisServer, connected_clients, count_keys, within

NOW = 1_000_000.0
#: The store's timeout where a test is about answers, not time: bursts of
#: claims on a busy 2-core machine can starve the loop past 0.25 s.
RELAXED = 5.0
#: The store's timeout in the fault tests: short, yet long enough that a
#: healthy claim never misses it on a busy 2-core machine (the default is 0.25).
STALL_TIMEOUT = 1.0
#: Generous bound for claims against a dead or stalled Redis: catches a
#: hang, not a slow machine.
LIVENESS = 10.0


def jti() -> str:
    return uuid.uuid4().hex


def frozen() -> float:
    return NOW


async def expect_unavailable(store: RedisReplayStore, count: int = 1) -> list[BaseException]:
    """``count`` concurrent claims: every one raises StoreUnavailable, promptly."""
    ids = [jti() for _ in range(count)]
    async with within(LIVENESS):
        results = await asyncio.gather(
            *(store.claim(i, time.time() + 35) for i in ids), return_exceptions=True
        )
    assert all(isinstance(r, StoreUnavailable) for r in results), results
    causes = [r.__cause__ for r in results if isinstance(r, BaseException)]
    assert all(c is not None for c in causes)
    return [c for c in causes if c is not None]


# -- construction (no server needed) ----------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"url": "redis://127.0.0.1:6379/0", "client": object()},
        {"url": "http://127.0.0.1:6379/0"},
        {"url": "127.0.0.1:6379"},
        {"url": "redis://127.0.0.1:6379/0", "prefix": ""},
        {"url": "redis://127.0.0.1:6379/0", "timeout": 0},
        {"url": "redis://127.0.0.1:6379/0", "margin": -1},
        {"url": "redis://127.0.0.1:6379/0", "timeout": float("inf")},  # no bound at all
        {"url": "redis://127.0.0.1:6379/0", "timeout": float("nan")},
        {"url": "redis://127.0.0.1:6379/0", "margin": float("inf")},
        {"url": "redis://127.0.0.1:6379/0", "margin": float("nan")},
        {"url": "redis://127.0.0.1:6379/0", "max_connections": 0},
        {"url": "redis://127.0.0.1:6379/0", "max_connections": True},
    ],
)
def test_unusable_settings_are_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        RedisReplayStore(**kwargs)


def test_ttl_is_time_to_expiry_plus_margin_rounded_up_with_a_floor() -> None:
    store = RedisReplayStore("redis://127.0.0.1:6379/0", margin=5, clock=frozen)
    assert store.ttl_ms(NOW + 35) == 40_000
    assert store.ttl_ms(NOW + 35.0001) == 40_001  # never shorter than asked
    bare = RedisReplayStore("redis://127.0.0.1:6379/0", margin=0, clock=frozen)
    assert bare.ttl_ms(NOW + 0.2) == MIN_TTL_MS
    assert bare.ttl_ms(NOW - 100) == MIN_TTL_MS  # an entry always lives a while


@pytest.mark.parametrize(
    "url",
    [
        # Unescaped "/", "?" or "#" in a password (base64 passwords have "/"):
        "redis://:s3cr/etPassw0rd@redis.internal:6379/0",
        "rediss://:s3cr/etPassw0rd@redis.internal:6380/0",
        "redis://:s3cr?etPassw0rd@redis.internal:6379/0",
        "redis://:s3cr#etPassw0rd@redis.internal:6379/0",
        "redis://admin:s3cr/etPassw0rd@redis.internal/0",
        "unix://:s3cr/etPassw0rd@/run/redis.sock",
        # Parsed, then refused: the error quotes what it could not parse.
        "redis://:s3cretPassw0rd@redis.internal:99999/0",
        "redis://:s3cretPassw0rd@redis.internal:6379/zero",
        "redis://redis.internal/0?password=s3cretPassw0rd&db=zero",
        "redis://:s3cr%2FetPassw0rd@redis.internal:6379/zero",
    ],
)
def test_a_password_never_reaches_an_error_or_the_repr(url: str) -> None:
    pieces = ("s3cr", "etPassw0rd", "s3cretPassw0rd", "Passw0rd")
    try:
        store = RedisReplayStore(url)
    except ConfigurationError as exc:
        text = str(exc)
        assert "unusable Redis URL" in text
        assert "redis.internal" in text or "unix://" in text
    else:
        text = repr(store)
    assert not any(piece in text for piece in pieces), text


def test_a_misplaced_at_asks_for_percent_encoding() -> None:
    with pytest.raises(ConfigurationError) as info:
        RedisReplayStore("redis://:s3cr/etPassw0rd@redis.internal:6379/0")
    assert "percent-encode" in str(info.value)
    assert "redis://***@redis.internal:6379/0" in str(info.value)
    with pytest.raises(ConfigurationError):
        RedisReplayStore("redis://redis.internal/0?client_name=me@host")  # write %40
    # Percent-encoded, the same password is fine.
    store = RedisReplayStore("redis://:s3cr%2FetPassw0rd@redis.internal:6379/0")
    assert (
        repr(store) == "<RedisReplayStore redis://***@redis.internal:6379/0 prefix='wsauth:jti:'>"
    )


def test_url_password_stays_out_of_repr() -> None:
    store = RedisReplayStore("redis://user:hunter2-secret@127.0.0.1:6379/0")
    assert "hunter2-secret" not in repr(store)
    assert "user:***@127.0.0.1:6379/0" in repr(store)
    sock = RedisReplayStore("unix:///run/redis.sock?db=2&password=hunter2-secret")
    assert "hunter2-secret" not in repr(sock)
    assert "unix:///run/redis.sock" in repr(sock)


async def test_rediss_url_builds_a_tls_pool() -> None:
    from redis.asyncio.connection import SSLConnection

    store = RedisReplayStore("rediss://127.0.0.1:6380/0", timeout=0.5, max_connections=7)
    client = store._connect()
    try:
        pool = client.connection_pool
        assert pool.connection_class is SSLConnection
        assert pool.max_connections == 7
        assert pool.connection_kwargs["socket_timeout"] == 0.5
        assert pool.connection_kwargs["socket_connect_timeout"] == 0.5
    finally:
        await client.aclose()


@pytest.mark.redis
def test_plain_urls_need_no_redis_py_and_the_others_explain_it(
    redis_url: str, key_prefix: str
) -> None:
    code = (
        "import sys, asyncio, time, uuid\n"
        "sys.modules['redis'] = None\n"  # makes `import redis` fail
        "import sanic_wsauth\n"
        "from sanic_wsauth import RedisReplayStore, ConfigurationError\n"
        f"store = RedisReplayStore({redis_url!r}, prefix={key_prefix!r})\n"
        "async def claims():\n"
        "    await store.open()\n"
        "    jti = uuid.uuid4().hex\n"
        "    first = await store.claim(jti, time.time() + 35)\n"
        "    again = await store.claim(jti, time.time() + 35)\n"
        "    await store.close()\n"
        "    return first, again\n"
        "print('claims:', *asyncio.run(claims()))\n"
        "tls = RedisReplayStore('rediss://127.0.0.1:6380/0')\n"
        "try:\n"
        "    asyncio.run(tls.open())\n"
        "except ConfigurationError as exc:\n"
        "    print('refused:', exc)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert "claims: True False" in out.stdout, out
    assert "refused:" in out.stdout and "sanic-wsauth[redis]" in out.stdout, out


# -- keys and expiry on the shared Redis --------------------------------------


@pytest.mark.redis
async def test_key_has_prefix_and_expires_with_its_ticket_plus_margin(
    redis_url: str, key_prefix: str
) -> None:
    store = RedisReplayStore(redis_url, prefix=key_prefix, margin=5, clock=frozen, timeout=RELAXED)
    await store.open()
    try:
        a = jti()
        assert await store.claim(a, NOW + 35) is True
        keys = count_keys(redis_url, key_prefix)
        assert list(keys) == [(key_prefix + a).encode()]
        ttl = keys[(key_prefix + a).encode()]
        assert 30_000 < ttl <= 40_000  # 35 s to expiry + 5 s margin, minus elapsed time
        assert redis.Redis.from_url(redis_url).get(key_prefix + a) == b"1"
    finally:
        await store.close()


@pytest.mark.redis
async def test_a_ticket_already_past_expiry_still_gets_a_short_lived_entry(
    redis_url: str, key_prefix: str
) -> None:
    store = RedisReplayStore(redis_url, prefix=key_prefix, margin=0, clock=frozen, timeout=RELAXED)
    try:
        a = jti()
        started = time.monotonic()
        assert await store.claim(a, NOW - 100) is True  # connects lazily
        again = await store.claim(a, NOW - 100)
        elapsed = time.monotonic() - started
        ttl = count_keys(redis_url, key_prefix).get((key_prefix + a).encode(), -2)
        assert ttl != -1  # the key has an expiry...
        assert ttl <= MIN_TTL_MS  # ...of the floor, not the (negative) time left
        if elapsed < 0.9:  # the entry cannot have lapsed between the two claims
            assert again is False
    finally:
        await store.close()


@pytest.mark.redis
async def test_nothing_is_left_behind_once_tickets_expire(redis_url: str, key_prefix: str) -> None:
    store = RedisReplayStore(redis_url, prefix=key_prefix, margin=0, clock=frozen, timeout=RELAXED)
    await store.open()
    try:
        results = await asyncio.gather(*(store.claim(jti(), NOW + 1) for _ in range(50)))
        assert results == [True] * 50
        assert len(count_keys(redis_url, key_prefix)) == 50
        async with within(LIVENESS):
            while count_keys(redis_url, key_prefix):
                await asyncio.sleep(0.1)
    finally:
        await store.close()


# -- client-object mode --------------------------------------------------------


@pytest.mark.redis
async def test_app_client_is_used_and_left_open(redis_url: str, key_prefix: str) -> None:
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        store = RedisReplayStore(client=client, prefix=key_prefix, timeout=RELAXED)
        await store.open()
        a = jti()
        assert await store.claim(a, time.time() + 35) is True
        assert await store.claim(a, time.time() + 35) is False
        assert await client.get(key_prefix + a) == "1"
        await store.close()
        assert store.client is client
        assert await client.ping() is True  # still the app's to use and close
        assert await store.claim(jti(), time.time() + 35) is True
    finally:
        await client.aclose()


@pytest.mark.redis
async def test_cluster_client(redis_servers: Any, key_prefix: str) -> None:
    node: RedisServer = redis_servers(
        "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"
    )
    admin = redis.Redis(port=node.port, socket_timeout=5)
    try:
        admin.execute_command("CLUSTER", "ADDSLOTSRANGE", 0, 16383)  # type: ignore[no-untyped-call]
        deadline = time.monotonic() + 10
        while b"cluster_state:ok" not in admin.execute_command("CLUSTER", "INFO"):  # type: ignore[no-untyped-call]
            assert time.monotonic() < deadline, "the one-node cluster never became ok"
            time.sleep(0.1)
    finally:
        admin.close()
    cluster = RedisCluster(host="127.0.0.1", port=node.port)
    try:
        store = RedisReplayStore(client=cluster, prefix=key_prefix, timeout=RELAXED)
        await store.open()
        a = jti()
        results = await asyncio.gather(*(store.claim(a, time.time() + 35) for _ in range(100)))
        assert results.count(True) == 1
        assert 30_000 < await cluster.pttl(key_prefix + a) <= 40_000
        await store.close()
        assert await cluster.get(key_prefix + a) == b"1"  # the store left it open
    finally:
        await cluster.aclose()


@pytest.mark.redis
async def test_unix_socket_url(redis_servers: Any, key_prefix: str) -> None:
    sock = Path(f"/tmp/wsauth-{uuid.uuid4().hex[:8]}.sock")  # noqa: S108 - short path
    try:
        redis_servers("--unixsocket", str(sock), "--unixsocketperm", "700")
        store = RedisReplayStore(f"unix://{sock}", prefix=key_prefix, timeout=RELAXED)
        await store.open()
        a = jti()
        assert await store.claim(a, time.time() + 35) is True
        assert await store.claim(a, time.time() + 35) is False
        await store.close()
    finally:
        sock.unlink(missing_ok=True)


@pytest.mark.redis
@pytest.mark.parametrize("options", ["", "?health_check_interval=0"], ids=["pipelined", "redis-py"])
async def test_close_releases_the_connections(private_redis: RedisServer, options: str) -> None:
    store = RedisReplayStore(private_redis.url + options, timeout=RELAXED)
    assert store.pipelined is (options == "")
    await store.open()
    await asyncio.gather(*(store.claim(jti(), time.time() + 35) for _ in range(20)))
    assert connected_clients(private_redis.port) >= 1
    await store.close()
    assert store.client is None
    deadline = time.monotonic() + LIVENESS
    while connected_clients(private_redis.port) != 0:
        assert time.monotonic() < deadline, "connections left open after close()"
        await asyncio.sleep(0.05)
    await store.close()  # idempotent


# -- real faults ---------------------------------------------------------------


@pytest.mark.redis
async def test_stalled_redis_times_out_then_recovers_without_reopen(
    private_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    store = RedisReplayStore(private_redis.url, timeout=STALL_TIMEOUT)
    await store.open()
    try:
        assert await store.claim(jti(), time.time() + 35) is True
        private_redis.pause()
        causes = await expect_unavailable(store, 20)
        assert all(isinstance(c, TimeoutError) for c in causes), causes
        private_redis.resume()
        async with within(LIVENESS):
            while True:  # the first claims may still meet connections being dropped
                try:
                    assert await store.claim(jti(), time.time() + 35) is True
                    break
                except StoreUnavailable:
                    await asyncio.sleep(0.05)
    finally:
        private_redis.resume()
        await store.close()
    downs = [r for r in caplog.records if "unavailable" in r.getMessage()]
    assert len(downs) == 1  # one line per outage, not one per claim


@pytest.mark.redis
async def test_killed_redis_is_refused_then_used_again_on_restart(
    private_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    store = RedisReplayStore(private_redis.url, timeout=STALL_TIMEOUT)
    await store.open()
    try:
        assert await store.claim(jti(), time.time() + 35) is True
        private_redis.kill()
        ids = [jti() for _ in range(3)]
        for i in ids:
            with pytest.raises(StoreUnavailable) as info:
                async with within(LIVENESS):
                    await store.claim(i, time.time() + 35)
            assert isinstance(info.value.__cause__, (ConnectionError, redis.ConnectionError))
        private_redis.start(port=private_redis.port)
        # The same store object, not reopened: the pool reconnects by itself.
        assert await store.claim(jti(), time.time() + 35) is True
    finally:
        await store.close()
    assert not any(i in caplog.text for i in ids)  # ticket ids never logged


@pytest.mark.redis
async def test_idle_pool_after_a_restart_serves_the_very_next_claim(
    private_redis: RedisServer,
) -> None:
    store = RedisReplayStore(private_redis.url, timeout=RELAXED)
    await store.open()
    try:
        # Several pooled connections, all left idle and then cut by a restart.
        results = await asyncio.gather(*(store.claim(jti(), time.time() + 35) for _ in range(5)))
        assert results == [True] * 5
        private_redis.kill()
        private_redis.start(port=private_redis.port)
        results = await asyncio.gather(*(store.claim(jti(), time.time() + 35) for _ in range(5)))
        assert results == [True] * 5
    finally:
        await store.close()


@pytest.mark.redis
async def test_redis_down_at_start_up_is_logged_then_used_once_it_answers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, redis_servers: Any
) -> None:
    port = free_port()
    url = f"redis://:hunter2-secret@127.0.0.1:{port}/0"
    store = RedisReplayStore(url, timeout=STALL_TIMEOUT)
    server = RedisServer(tmp_path, "--requirepass", "hunter2-secret")
    try:
        with caplog.at_level(logging.WARNING, logger="sanic_wsauth"):
            await store.open()  # must not raise: the worker still starts
        assert "unavailable" in caplog.text
        assert "hunter2-secret" not in caplog.text
        await expect_unavailable(store)
        server.start(port=port)
        assert await store.claim(jti(), time.time() + 35) is True
    finally:
        await store.close()
        server.kill()


@pytest.mark.redis
async def test_error_replies_fail_closed(redis_servers: Any) -> None:
    server: RedisServer = redis_servers("--requirepass", "right-password")
    wrong = RedisReplayStore(f"redis://:wrong-password@127.0.0.1:{server.port}/0", timeout=RELAXED)
    anonymous = RedisReplayStore(server.url, timeout=RELAXED)
    right = RedisReplayStore(f"redis://:right-password@127.0.0.1:{server.port}/0", timeout=RELAXED)
    admin = redis.Redis(port=server.port, password="right-password", socket_timeout=5)
    try:
        causes = await expect_unavailable(wrong, 3)
        assert all(str(c).startswith("WRONGPASS") for c in causes), causes
        causes = await expect_unavailable(anonymous, 3)
        assert all(str(c).startswith("NOAUTH") for c in causes), causes
        assert await right.claim(jti(), time.time() + 35) is True
        # Out of memory: Redis answers SET with an error reply.
        admin.config_set("maxmemory", "1")
        causes = await expect_unavailable(right, 3)
        assert all(isinstance(c, ReplyError) and str(c).startswith("OOM") for c in causes)
        admin.config_set("maxmemory", "0")
        assert await right.claim(jti(), time.time() + 35) is True
    finally:
        admin.close()
        for store in (wrong, anonymous, right):
            await store.close()


# -- in a Sanic app --------------------------------------------------------------


def _app(name: str, secret: str, **options: Any) -> Sanic[Any, Any]:
    app: Sanic[Any, Any] = Sanic(name)
    app.config.WEBSOCKET_PING_INTERVAL = None
    WSAuth(app, secret_keys=secret, authenticate=lambda r: "alice", **options)

    app.add_websocket_route(echo_subject, "/ws")
    return app


@pytest.mark.redis
async def test_sanic_app_uses_redis_from_config(
    app_name: str, secret: str, redis_url: str, key_prefix: str
) -> None:
    app = _app(app_name, secret)
    app.config.WSAUTH_REDIS_URL = redis_url
    app.config.WSAUTH_REDIS_PREFIX = key_prefix
    app.config.WSAUTH_REDIS_TIMEOUT = RELAXED
    async with serve(app) as srv:
        store = app.ctx.wsauth.store
        assert isinstance(store, RedisReplayStore) and store.shared
        assert store.prefix == key_prefix and store.timeout == RELAXED
        token = await fetch_ticket(srv.http)
        ok = await handshake(f"{srv.ws}/ws?token={token}")
        assert ok.status == 101 and ok.reply == "alice: ping"
        again = await handshake(f"{srv.ws}/ws?token={token}")
        assert again.status == 401 and json.loads(again.body) == {"error": "replayed"}
        assert len(count_keys(redis_url, key_prefix)) == 1
    assert store.client is None  # closed in after_server_stop


@pytest.mark.redis
async def test_sanic_handshakes_get_503_while_redis_is_down_then_succeed(
    app_name: str, secret: str, private_redis: RedisServer
) -> None:
    app = _app(app_name, secret, redis_url=private_redis.url, redis_timeout=STALL_TIMEOUT)
    async with serve(app) as srv:
        token = await fetch_ticket(srv.http)
        assert (await handshake(f"{srv.ws}/ws?token={token}")).status == 101

        async def refused_while_down() -> None:
            tokens = [await fetch_ticket(srv.http) for _ in range(5)]
            for token in tokens:
                got = await handshake(f"{srv.ws}/ws?token={token}", timeout=LIVENESS)
                assert got.status == 503
                assert json.loads(got.body) == {"error": "store_unavailable"}

        private_redis.pause()
        await refused_while_down()
        private_redis.kill()
        await refused_while_down()
        private_redis.start(port=private_redis.port)
        token = await fetch_ticket(srv.http)
        ok = await handshake(f"{srv.ws}/ws?token={token}")
        assert ok.status == 101 and ok.reply == "alice: ping"
        assert app.ctx.wsauth.counters["store_unavailable"] == 10
        assert app.ctx.wsauth.counters["accepted"] == 2
