"""The pipelined Redis connection behind ``redis://`` and ``unix://`` URLs.

Against real Redis: ACL users and databases, many claims on one socket,
replies split into single bytes by a real TCP relay. A hand-written server on
127.0.0.1 stands in for Redis only where real Redis cannot misbehave: a reply
of an unknown type, a reply nobody asked for.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, cast

import pytest

from sanic_wsauth import ConfigurationError, StoreUnavailable
from sanic_wsauth.stores.redis import RedisReplayStore, set_nx_px
from sanic_wsauth.stores.resp import (
    AmbiguousClaim,
    DroppedConnection,
    ProtocolError,
    RedisAddress,
    ReplyError,
    pack_command,
)

from .redis_support import RedisServer, connected_clients, count_keys, within

RELAXED = 5.0


def jti() -> str:
    return uuid.uuid4().hex


def soon() -> float:
    return time.time() + 35


# -- URLs and packing (no server) ------------------------------------------------


@pytest.mark.parametrize(
    ("url", "address"),
    [
        ("redis://127.0.0.1:6379/0", RedisAddress("127.0.0.1", 6379)),
        ("redis://redis.internal", RedisAddress("redis.internal", 6379)),
        ("redis://:pa%40ss@h:7000/3", RedisAddress("h", 7000, db=3, password="pa@ss")),
        ("redis://alice:pw@h/2", RedisAddress("h", 6379, db=2, username="alice", password="pw")),
        ("redis://h/1?db=4", RedisAddress("h", 6379, db=4)),
        (
            "unix:///run/redis.sock?db=2&password=pw",
            RedisAddress(path="/run/redis.sock", db=2, password="pw"),
        ),
        ("redis://:@h/0", RedisAddress("h", 6379)),  # an empty password: no AUTH
        ("unix://:@/run/redis.sock", RedisAddress(path="/run/redis.sock")),
    ],
)
def test_plain_urls_are_parsed_for_the_pipelined_connection(
    url: str, address: RedisAddress
) -> None:
    assert RedisAddress.from_url(url) == address
    assert RedisReplayStore(url).pipelined is True


@pytest.mark.parametrize(
    "url",
    [
        "rediss://127.0.0.1:6380/0",
        "redis://127.0.0.1:6379/0?socket_keepalive=true",
        "unix:///run/redis.sock?db=1&client_name=x",
    ],
)
def test_tls_and_driver_options_go_to_redis_py(url: str) -> None:
    assert RedisAddress.from_url(url) is None
    assert RedisReplayStore(url).pipelined is False


@pytest.mark.parametrize(
    "url", ["redis://127.0.0.1:99999/0", "redis://127.0.0.1:6379/zero", "unix://?db=1"]
)
def test_malformed_plain_urls_are_refused_up_front(url: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        RedisReplayStore(url)
    assert "unusable Redis URL" in str(info.value)


def test_the_unrolled_set_is_the_generic_packing() -> None:
    for key, ttl in [(b"wsauth:jti:" + b"a" * 32, 40_001), (b"k", 1000), (b"x" * 300, 9)]:
        assert set_nx_px(key, ttl) == pack_command(
            b"SET", key, b"1", b"NX", b"PX", str(ttl).encode()
        )


# -- real Redis ------------------------------------------------------------------


@pytest.mark.redis
async def test_concurrent_claims_share_one_connection(private_redis: RedisServer) -> None:
    store = RedisReplayStore(private_redis.url, timeout=RELAXED)
    await store.open()
    try:
        ids = [jti() for _ in range(300)]
        assert await asyncio.gather(*(store.claim(i, soon()) for i in ids)) == [True] * 300
        assert connected_clients(private_redis.port) == 1
        # One ticket raced 50 times on that one socket: exactly one winner.
        one = jti()
        results = await asyncio.gather(*(store.claim(one, soon()) for _ in range(50)))
        assert results.count(True) == 1
        assert len(count_keys(private_redis.url, "wsauth:jti:")) == 301
    finally:
        await store.close()


@pytest.mark.redis
async def test_pipelined_and_redis_py_stores_share_one_set(redis_url: str, key_prefix: str) -> None:
    # Workers may differ in URL (one with a driver option): one set all the same.
    lean = RedisReplayStore(redis_url, prefix=key_prefix, timeout=RELAXED)
    pooled = RedisReplayStore(
        redis_url + "?health_check_interval=0", prefix=key_prefix, timeout=RELAXED
    )
    try:
        assert lean.pipelined and not pooled.pipelined
        a, b = jti(), jti()
        assert await lean.claim(a, soon()) is True
        assert await pooled.claim(a, soon()) is False
        assert await pooled.claim(b, soon()) is True
        assert await lean.claim(b, soon()) is False
    finally:
        await lean.close()
        await pooled.close()


@pytest.mark.redis
async def test_acl_user_and_database_from_the_url(redis_servers: Any) -> None:
    server: RedisServer = redis_servers(
        "--user", "alice", "on", ">alice-secret", "~wsauth:*", "+set", "+ping", "+select"
    )  # fmt: skip
    base = f"127.0.0.1:{server.port}"
    store = RedisReplayStore(f"redis://alice:alice-secret@{base}/3", timeout=RELAXED)
    wrong = RedisReplayStore(f"redis://alice:nope@{base}/3", timeout=RELAXED)
    try:
        a = jti()
        assert await store.claim(a, soon()) is True
        assert await store.claim(a, soon()) is False
        assert count_keys(f"redis://{base}/3", "wsauth:jti:") != {}
        assert count_keys(f"redis://{base}/0", "wsauth:jti:") == {}
        with pytest.raises(StoreUnavailable) as info:
            await wrong.claim(jti(), soon())
        cause = info.value.__cause__
        assert isinstance(cause, ReplyError) and str(cause).startswith("WRONGPASS")
        assert "alice-secret" not in repr(store) and "nope" not in str(cause)
    finally:
        await store.close()
        await wrong.close()


@pytest.mark.redis
async def test_claims_in_flight_on_a_dropped_connection_are_not_resent(
    private_redis: RedisServer,
) -> None:
    store = RedisReplayStore(private_redis.url, timeout=0.6)
    await store.open()
    try:
        private_redis.pause()
        first = asyncio.ensure_future(store.claim(jti(), soon()))
        await asyncio.sleep(0.3)
        second = asyncio.ensure_future(store.claim(jti(), soon()))
        results = await asyncio.gather(first, second, return_exceptions=True)
        causes = [r.__cause__ if isinstance(r, StoreUnavailable) else r for r in results]
        # The first timed out and, as nothing had come back since it was
        # sent, dropped the connection. The second was in flight on it: had
        # it been resent on a new connection, it could find the key of its
        # own first SET and refuse an unused ticket as replayed.
        assert isinstance(causes[0], TimeoutError), causes
        assert isinstance(causes[1], DroppedConnection), causes
        private_redis.resume()
        assert await store.claim(jti(), soon()) is True  # a new connection
    finally:
        private_redis.resume()
        await store.close()


@asynccontextmanager
async def relay(port: int) -> AsyncIterator[int]:
    """A TCP relay to Redis on ``port`` that hands replies back one byte at a time."""

    async def pump(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, dribble: bool
    ) -> None:
        try:
            while data := await reader.read(65536):
                for chunk in [data[i : i + 1] for i in range(len(data))] if dribble else [data]:
                    writer.write(chunk)
                    await writer.drain()
                    if dribble:
                        await asyncio.sleep(0)
        except OSError:
            pass  # the other side hung up
        finally:
            writer.close()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", port)
        await asyncio.gather(pump(reader, up_writer, False), pump(up_reader, writer, True))

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()


@pytest.mark.redis
async def test_replies_split_into_single_bytes(redis_servers: Any) -> None:
    server: RedisServer = redis_servers("--requirepass", "pw")
    async with relay(server.port) as port:
        store = RedisReplayStore(f"redis://:pw@127.0.0.1:{port}/5", timeout=RELAXED)
        await store.open()  # AUTH, SELECT and PING replies, byte by byte
        try:
            ids = [jti() for _ in range(40)]
            first = await asyncio.gather(*(store.claim(i, soon()) for i in ids))
            again = await asyncio.gather(*(store.claim(i, soon()) for i in ids))
            assert first == [True] * 40  # "+OK\r\n"
            assert again == [False] * 40  # "$-1\r\n"
        finally:
            await store.close()


@asynccontextmanager
async def fake_redis(
    answer: Callable[[bytes], bytes], connections: list[int] | None = None
) -> AsyncIterator[str]:
    """A server on 127.0.0.1 that answers every read with ``answer(data)``."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if connections is not None:
            connections.append(1)
        try:
            while data := await reader.read(65536):
                writer.write(answer(data))
        except OSError:
            pass  # the store dropped the connection
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield f"redis://127.0.0.1:{server.sockets[0].getsockname()[1]}/0"
    finally:
        server.close()


async def _refused_with(answer: Callable[[bytes], bytes]) -> BaseException | None:
    async with fake_redis(answer) as url:
        store = RedisReplayStore(url, timeout=RELAXED)
        try:
            async with within(RELAXED * 2):
                with pytest.raises(StoreUnavailable) as info:
                    await store.claim(jti(), soon())
            return info.value.__cause__
        finally:
            await store.close()


async def test_a_reply_of_unknown_type_fails_closed() -> None:
    cause = await _refused_with(lambda data: b"!unknown\r\n")
    assert isinstance(cause, DroppedConnection)  # dropped, and the claim not resent


async def test_a_truncated_stream_fails_closed() -> None:
    cause = await _refused_with(lambda data: b"$5\r\nOK")  # then silence
    assert isinstance(cause, TimeoutError)


async def test_a_reply_nobody_asked_for_drops_the_connection() -> None:
    # Two replies to one command: the spare one would pair every later claim
    # with the reply to an earlier one, so the connection must go.
    connections: list[int] = []
    async with fake_redis(lambda data: b"$-1\r\n:7\r\n", connections) as url:
        store = RedisReplayStore(url, timeout=RELAXED)
        try:
            assert await store.claim(jti(), soon()) is False  # nil: not a first use
            assert await store.claim(jti(), soon()) is False
            assert len(connections) == 2  # the second claim needed a new connection
        finally:
            await store.close()


@pytest.mark.parametrize(
    "reply",
    [
        b"$2\r\nOK\r\n",  # the bytes of +OK, as a bulk string: not a first use
        b":1\r\n",
        b"+QUEUED\r\n",
        b"$1\r\n1\r\n",
    ],
)
async def test_a_reply_set_nx_cannot_give_fails_closed_and_drops_the_connection(
    reply: bytes,
) -> None:
    connections: list[int] = []
    async with fake_redis(lambda data: reply, connections) as url:
        store = RedisReplayStore(url, timeout=RELAXED)
        try:
            for _ in range(2):
                with pytest.raises(StoreUnavailable) as info:
                    await store.claim(jti(), soon())
                assert isinstance(info.value.__cause__, ProtocolError)
            assert len(connections) == 2  # each claim found the last connection dropped
        finally:
            await store.close()


async def test_plus_ok_and_nil_are_a_claims_only_answers() -> None:
    replies = iter([b"+OK\r\n", b"$-1\r\n"])
    async with fake_redis(lambda data: next(replies)) as url:
        store = RedisReplayStore(url, timeout=RELAXED)
        try:
            assert await store.claim(jti(), soon()) is True
            assert await store.claim(jti(), soon()) is False
        finally:
            await store.close()


class _OddClient:
    """A redis-py client whose ``SET NX`` answers what real Redis never does."""

    def __init__(self, reply: object) -> None:
        self.reply = reply

    async def set(self, *args: Any, **kwargs: Any) -> object:
        return self.reply

    async def ping(self) -> bool:
        return True


def _odd_store(reply: object) -> RedisReplayStore:
    return RedisReplayStore(client=cast(Any, _OddClient(reply)))


@pytest.mark.parametrize("reply", [1, b"OK", "OK", 0])
async def test_a_redis_py_reply_other_than_true_or_none_fails_closed(reply: object) -> None:
    with pytest.raises(StoreUnavailable) as info:
        await _odd_store(reply).claim(jti(), soon())
    assert isinstance(info.value.__cause__, ProtocolError)
    assert await _odd_store(True).claim(jti(), soon()) is True
    assert await _odd_store(None).claim(jti(), soon()) is False


async def test_each_claim_times_out_at_its_own_deadline_on_a_slow_connection() -> None:
    # A slow Redis that still answers: replies come back in order, late. One
    # watchdog timer per connection must fail each claim at its own deadline,
    # and keep the connection, which is not wedged (replies keep coming).
    timeout = 0.5
    delays = iter([0.3, 0.9, 0.9])  # the reply to each command, after this long
    connections: list[int] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        loop = asyncio.get_running_loop()
        ready = 0.0
        try:
            while data := await reader.read(65536):
                for _ in range(data.count(b"*")):  # one reply per command, in order
                    ready = max(loop.time() + next(delays, 0.0), ready)
                    loop.call_at(ready, writer.write, b"+OK\r\n")
        except OSError:
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    url = f"redis://127.0.0.1:{server.sockets[0].getsockname()[1]}/0"
    store = RedisReplayStore(url, timeout=timeout)
    loop = asyncio.get_running_loop()

    async def timed_claim() -> tuple[BaseException | None, float]:
        start = loop.time()
        try:
            await store.claim(jti(), soon())
            return None, loop.time() - start
        except StoreUnavailable as exc:
            return exc.__cause__, loop.time() - start

    try:
        async with within(RELAXED):
            first = asyncio.ensure_future(timed_claim())  # answered after 0.3 s
            await asyncio.sleep(0.1)
            late_a = asyncio.ensure_future(timed_claim())  # answered after its deadline
            await asyncio.sleep(0.1)
            late_b = asyncio.ensure_future(timed_claim())
            (ok, _), (cause_a, took_a), (cause_b, took_b) = await asyncio.gather(
                first, late_a, late_b
            )
            assert ok is None
            for cause, took in ((cause_a, took_a), (cause_b, took_b)):
                assert isinstance(cause, TimeoutError), cause
                assert timeout - 0.01 <= took < timeout + 0.25, took
            # Not wedged (a reply came after each was sent): the same
            # connection serves the next claim once the late replies are in.
            assert await store.claim(jti(), soon()) is True
            assert len(connections) == 1
    finally:
        await store.close()
        server.close()


# -- lost replies, failover, a caller cancelled while connecting -------------------------


class Switchboard:
    """A TCP relay to Redis whose target changes for new connections only (a VIP
    or DNS name in front of a failover), and that can cut the next SET: pass
    it to Redis, let Redis run it, then hang up without the reply."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.cut_next_set = False
        self.port = 0
        self.tasks: set[asyncio.Task[None]] = set()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
        except BaseException:
            writer.close()
            raise

        async def down() -> None:
            while data := await up_reader.read(65536):
                if not writer.is_closing():
                    writer.write(data)

        replies = asyncio.ensure_future(down())
        try:
            while data := await reader.read(65536):
                cut = self.cut_next_set and b"\r\nSET\r\n" in data
                if cut:
                    self.cut_next_set = False
                    replies.cancel()  # the reply never comes back
                up_writer.write(data)
                if cut:
                    await asyncio.sleep(0.1)  # Redis runs the SET
                    writer.transport.abort()
                    break
        except OSError:
            pass
        finally:
            replies.cancel()
            up_writer.close()
            writer.close()


@asynccontextmanager
async def switchboard(target: int) -> AsyncIterator[Switchboard]:
    board = Switchboard(target)
    server = await asyncio.start_server(board.handle, "127.0.0.1", 0)
    board.port = server.sockets[0].getsockname()[1]
    try:
        yield board
    finally:
        server.close()
        for task in list(board.tasks):
            task.cancel()
        await asyncio.gather(*board.tasks, return_exceptions=True)


# The same plain URL through the pipelined connection, and (a driver option
# in the query) through a redis-py pool.
PATHS = pytest.mark.parametrize(
    "query", ["", "?socket_keepalive=true"], ids=["pipelined", "redis-py"]
)


@pytest.mark.redis
@PATHS
async def test_a_claim_whose_reply_was_lost_is_503_not_replayed(
    private_redis: RedisServer, query: str
) -> None:
    """Redis ran the SET and hung up before replying: the resent SET finds the
    key, and that nil cannot tell a replay from the first SET. 503 (try
    again with a new ticket), never 401 replayed for an unused ticket."""
    async with switchboard(private_redis.port) as board:
        store = RedisReplayStore(f"redis://127.0.0.1:{board.port}/0{query}", timeout=RELAXED)
        await store.open()
        try:
            assert await store.claim(jti(), soon()) is True  # a warm connection
            board.cut_next_set = True
            lost = jti()
            with pytest.raises(StoreUnavailable) as info:
                await store.claim(lost, soon())
            assert isinstance(info.value.__cause__, AmbiguousClaim), info.value.__cause__
            assert store.key(lost).encode() in count_keys(private_redis.url, store.key(lost))
            assert await store.claim(lost, soon()) is False  # a real replay: still refused
            assert await store.claim(jti(), soon()) is True
        finally:
            await store.close()


@pytest.mark.redis
@PATHS
async def test_a_failover_behind_one_address_is_followed_without_a_restart(
    redis_servers: Any, query: str
) -> None:
    """The old primary keeps the store's connection and answers READONLY once
    demoted: that claim fails closed and the connection goes, so the next one
    connects, through the same address, to the new primary."""
    import redis

    old: RedisServer = redis_servers()
    new: RedisServer = redis_servers()
    admin_old = redis.Redis(port=old.port, socket_timeout=5)
    admin_new = redis.Redis(port=new.port, socket_timeout=5)
    async with switchboard(old.port) as board:
        store = RedisReplayStore(f"redis://127.0.0.1:{board.port}/0{query}", timeout=RELAXED)
        await store.open()
        try:
            assert await store.claim(jti(), soon()) is True
            board.target = new.port  # the address now leads to the new primary
            admin_old.replicaof("127.0.0.1", new.port)  # the old one is demoted
            with pytest.raises(StoreUnavailable) as info:
                await store.claim(jti(), soon())
            cause = str(info.value.__cause__)  # redis-py drops the error's code
            assert cause.startswith("READONLY") or "read only replica" in cause, cause
            assert await store.claim(jti(), soon()) is True  # no restart needed
            assert admin_new.dbsize() >= 1
        finally:
            await store.close()
            admin_old.replicaof("no", "one")
            admin_old.close()
            admin_new.close()


@pytest.mark.redis
async def test_a_caller_cancelled_while_connecting_fails_only_itself(
    private_redis: RedisServer,
) -> None:
    """The first claim on a store without a connection opens it; its client
    leaving (Sanic cancels its task) must not fail the claims waiting on the
    same connection attempt."""
    store = RedisReplayStore(f"redis://127.0.0.1:{private_redis.port}/1", timeout=RELAXED)
    try:
        private_redis.pause()  # the connection's SELECT waits
        first = asyncio.ensure_future(store.claim(jti(), soon()))
        await asyncio.sleep(0.05)
        second = asyncio.ensure_future(store.claim(jti(), soon()))
        await asyncio.sleep(0.05)
        first.cancel()
        await asyncio.sleep(0.05)
        private_redis.resume()
        async with within(RELAXED):
            assert await second is True
        assert (await asyncio.gather(first, return_exceptions=True))[0].__class__ is (
            asyncio.CancelledError
        )
    finally:
        private_redis.resume()
        await store.close()


@pytest.mark.redis
@PATHS
async def test_a_stale_replica_answering_masterdown_is_left_for_the_next_claim(
    redis_servers: Any, query: str
) -> None:
    """A replica that lost its primary (writable, not serving stale data)
    answers MASTERDOWN: the claim fails closed and the store reconnects, so the
    next claim reaches what the address leads to now."""
    import redis

    stale: RedisServer = redis_servers()
    primary: RedisServer = redis_servers()
    admin = redis.Redis(port=stale.port, socket_timeout=5)
    admin.config_set("replica-read-only", "no")
    admin.config_set("replica-serve-stale-data", "no")
    admin.replicaof("127.0.0.1", 1)  # a primary that is gone
    admin.close()
    async with switchboard(stale.port) as board:
        store = RedisReplayStore(f"redis://127.0.0.1:{board.port}/0{query}", timeout=RELAXED)
        await store.open()
        try:
            with pytest.raises(StoreUnavailable) as info:
                await store.claim(jti(), soon())
            cause = str(info.value.__cause__)  # redis-py drops the error's code
            assert cause.startswith("MASTERDOWN") or "Link with MASTER is down" in cause, cause
            board.target = primary.port
            assert await store.claim(jti(), soon()) is True
        finally:
            await store.close()


async def test_closing_the_store_while_it_connects_fails_the_claim_closed() -> None:
    """close() (at server stop, say) while a claim waits for the connection:
    the claim raises StoreUnavailable (503), it is not cancelled itself."""

    handlers: list[asyncio.Task[Any]] = []

    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        handlers.append(task)
        try:
            await reader.read(65536)  # SELECT: answered too late
            await asyncio.sleep(5)
        finally:
            writer.close()

    server = await asyncio.start_server(slow, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    store = RedisReplayStore(f"redis://127.0.0.1:{port}/1", timeout=RELAXED)
    try:
        claim = asyncio.ensure_future(store.claim(jti(), soon()))
        await asyncio.sleep(0.2)
        await store.close()
        async with within(RELAXED):
            with pytest.raises(StoreUnavailable):
                await claim
        assert not claim.cancelled()
    finally:
        server.close()
        for handler in handlers:
            handler.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)
