"""MemoryReplayStore specifics: expiry, the hard cap, flat size under churn."""

from __future__ import annotations

import asyncio

import pytest

from sanic_wsauth import MemoryReplayStore, StoreUnavailable


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_first_claim_only() -> None:
    store = MemoryReplayStore()
    assert await store.claim("a" * 32, 9e9) is True
    assert await store.claim("a" * 32, 9e9) is False
    assert await store.claim("b" * 32, 9e9) is True


async def test_concurrent_claims_of_one_jti_yield_exactly_one_winner() -> None:
    store = MemoryReplayStore()
    results = await asyncio.gather(*(store.claim("c" * 32, 9e9) for _ in range(500)))
    assert results.count(True) == 1


async def test_entries_are_dropped_once_expired() -> None:
    clock = Clock()
    store = MemoryReplayStore(clock=clock)
    for i in range(100):
        await store.claim(f"{i:032x}", clock.now + 35)
    assert len(store) == 100
    clock.now += 34
    assert await store.claim(f"{100:032x}", clock.now + 35)
    assert len(store) == 101  # none expired yet
    clock.now += 2
    assert await store.claim(f"{101:032x}", clock.now + 35)
    assert len(store) == 2  # the first hundred are gone


async def test_a_live_entry_is_never_dropped_early() -> None:
    clock = Clock()
    store = MemoryReplayStore(clock=clock)
    await store.claim("d" * 32, clock.now + 35)
    clock.now += 34.9
    assert store.purge() == 0
    assert await store.claim("d" * 32, clock.now + 35) is False


async def test_cap_fails_closed_instead_of_evicting() -> None:
    clock = Clock()
    store = MemoryReplayStore(max_entries=3, clock=clock)
    for i in range(3):
        assert await store.claim(f"{i:032x}", clock.now + 35)
    with pytest.raises(StoreUnavailable) as info:
        await store.claim("e" * 32, clock.now + 35)
    assert info.value.status == 503 and info.value.reason == "store_unavailable"
    # The live entries are all still there: nothing was evicted to make room.
    for i in range(3):
        assert await store.claim(f"{i:032x}", clock.now + 35) is False
    # Once they expire there is room again.
    clock.now += 36
    assert await store.claim("e" * 32, clock.now + 35)


async def test_size_stays_flat_under_churn() -> None:
    clock = Clock()
    store = MemoryReplayStore(clock=clock)
    peak = 0
    for i in range(200_000):
        if i % 1000 == 0:
            clock.now += 1.0  # 1000 tickets a second, each living 35 s
        await store.claim(f"{i:032x}", clock.now + 35)
        peak = max(peak, len(store))
    assert peak <= 36_000
    assert len(store._order) == len(store)


async def test_close_forgets_everything() -> None:
    store = MemoryReplayStore()
    await store.claim("f" * 32, 9e9)
    await store.close()
    assert len(store) == 0


def test_cap_must_be_positive() -> None:
    with pytest.raises(ValueError):
        MemoryReplayStore(max_entries=0)
