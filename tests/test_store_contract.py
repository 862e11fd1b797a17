"""The ReplayStore contract, run against every store.

MemoryReplayStore runs on an injected clock. RedisReplayStore runs on the real
Redis at 127.0.0.1:6379 under a key prefix of the test's own, twice: on its
pipelined connection (a plain URL) and on its redis-py pool (a URL with a
driver option). Its expiry is Redis's own, so that test waits for a real
one-second entry to lapse.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest

from sanic_wsauth import MemoryReplayStore, ReplayStore, StoreUnavailable
from sanic_wsauth.stores.redis import RedisReplayStore

from ._support import free_port

NOW = 1_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


@dataclass
class Harness:
    """One store kind: its stores, and how time passes for it."""

    kind: str
    make: Callable[[], ReplayStore]
    clock: Clock
    advance: Callable[[float], Awaitable[None]]
    broken: Callable[[], ReplayStore]
    opened: list[ReplayStore] = field(default_factory=list)

    async def store(self) -> ReplayStore:
        """A store sharing the set with every other one of this harness.

        For Redis each is a separate pool (as in separate workers); the
        memory store is per process, so "another worker" is the same one.
        """
        if self.kind == "memory" and self.opened:
            return self.opened[0]
        store = self.make()
        await store.open()
        self.opened.append(store)
        return store


def jti() -> str:
    return uuid.uuid4().hex


@pytest.fixture(
    params=[
        "memory",
        pytest.param("redis", marks=pytest.mark.redis),
        pytest.param("redis-py", marks=pytest.mark.redis),
    ]
)
async def harness(request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    clock = Clock()
    if request.param == "memory":
        # margin=0, as for Redis below: the expiry test can be exact.
        shared = MemoryReplayStore(margin=0, clock=clock)

        async def advance_memory(seconds: float) -> None:
            clock.now += seconds

        h = Harness(
            "memory",
            lambda: shared,
            clock,
            advance_memory,
            broken=lambda: _full_memory_store(clock),
        )
    else:
        url: str = request.getfixturevalue("redis_url")
        prefix: str = request.getfixturevalue("key_prefix")
        pipelined = request.param == "redis"
        if not pipelined:
            url += "?health_check_interval=0"  # any driver option: the redis-py pool

        async def advance_redis(seconds: float) -> None:
            # Redis expires keys on its own clock: let real time pass.
            clock.now += seconds
            await asyncio.sleep(seconds)

        h = Harness(
            "redis",
            # margin=0 and a frozen clock: an entry lives exactly as long as
            # expires_at - clock() says, so the expiry test can be exact. The
            # timeout is generous: these tests are about answers, and bursts of
            # 200 claims on a busy 2-core machine; timeouts have their own tests.
            lambda: RedisReplayStore(url, prefix=prefix, margin=0, clock=clock, timeout=10),
            clock,
            advance_redis,
            broken=lambda: RedisReplayStore(
                f"redis://127.0.0.1:{free_port()}/0{'' if pipelined else '?db=0&ssl=false'}",
                prefix=prefix,
            ),
        )
        assert RedisReplayStore(url).pipelined is pipelined
    yield h
    for store in h.opened:
        await store.close()


def _full_memory_store(clock: Clock) -> ReplayStore:
    store = MemoryReplayStore(max_entries=1, clock=clock)
    store._expiry["x"] = clock.now + 60  # the one live entry fills it
    store._order.append("x")
    return store


async def test_first_claim_wins_later_claims_lose(harness: Harness) -> None:
    store = await harness.store()
    a, b = jti(), jti()
    assert await store.claim(a, NOW + 35) is True
    assert await store.claim(a, NOW + 35) is False
    assert await store.claim(a, NOW + 35) is False
    assert await store.claim(b, NOW + 35) is True


async def test_another_worker_sees_the_claim(harness: Harness) -> None:
    one, two = await harness.store(), await harness.store()
    a = jti()
    assert await one.claim(a, NOW + 35) is True
    assert await two.claim(a, NOW + 35) is False


async def test_concurrent_claims_of_one_jti_have_exactly_one_winner(harness: Harness) -> None:
    stores = [await harness.store() for _ in range(4)]
    a = jti()
    results = await asyncio.gather(*(stores[i % 4].claim(a, NOW + 35) for i in range(200)))
    assert results.count(True) == 1
    assert results.count(False) == 199


async def test_concurrent_claims_of_distinct_jtis_all_win(harness: Harness) -> None:
    store = await harness.store()
    ids = [jti() for _ in range(200)]
    results = await asyncio.gather(*(store.claim(i, NOW + 35) for i in ids))
    assert results == [True] * 200


async def test_entry_lives_until_expiry_then_the_id_is_free(harness: Harness) -> None:
    store = await harness.store()
    a = jti()
    expires_at = harness.clock.now + 1.0
    assert await store.claim(a, expires_at) is True
    assert await store.claim(a, expires_at) is False  # still live
    await harness.advance(1.2)
    assert await store.claim(a, expires_at + 1.2) is True  # gone, so nothing piles up


async def test_unavailable_store_raises_and_never_says_first_use(harness: Harness) -> None:
    store = harness.broken()
    await store.open()
    try:
        for _ in range(3):
            with pytest.raises(StoreUnavailable) as info:
                await store.claim(jti(), NOW + 35)
            assert info.value.status == 503 and info.value.reason == "store_unavailable"
    finally:
        await store.close()


async def test_close_is_idempotent(harness: Harness) -> None:
    store = await harness.store()
    assert await store.claim(jti(), NOW + 35) is True
    await store.close()
    await store.close()


def test_shared_flag_says_whether_workers_share_the_set(harness: Harness) -> None:
    assert harness.make().shared is (harness.kind == "redis")
