"""MemoryReplayStore specifics: expiry, the hard cap, flat size under churn."""

from __future__ import annotations

import asyncio

import pytest

from sanic_wsauth import (
    MemoryReplayStore,
    StoreUnavailable,
    TicketExpired,
    TicketIssuer,
    TicketVerifier,
)


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


async def test_entries_are_dropped_once_past_expiry_and_margin() -> None:
    clock = Clock()
    store = MemoryReplayStore(clock=clock)
    assert store.margin == 1.0
    for i in range(100):
        await store.claim(f"{i:032x}", clock.now + 35)
    assert len(store) == 100
    clock.now += 36  # expiry + margin: the last instant they are kept
    assert await store.claim(f"{100:032x}", clock.now + 35)
    assert len(store) == 101  # none dropped yet
    clock.now += 0.5
    assert await store.claim(f"{101:032x}", clock.now + 35)
    assert len(store) == 2  # the first hundred are gone


async def test_a_ticket_is_refused_at_its_last_accepted_second() -> None:
    # The verifier accepts a ticket while its age is at most max_age + leeway,
    # so at expires_at itself; the store must still hold its entry then, and a
    # moment later, when its own clock is read.
    clock = Clock()
    issuer = TicketIssuer("k" * 32, clock=clock)
    verifier = TicketVerifier("k" * 32, clock=clock)
    store = MemoryReplayStore(clock=clock)
    token = issuer.issue("alice")
    ticket = verifier.verify(token)
    assert await store.claim(ticket.jti, ticket.expires_at) is True
    clock.now = ticket.expires_at
    again = verifier.verify(token)  # still inside its lifetime
    assert await store.claim(again.jti, again.expires_at) is False
    clock.now = ticket.expires_at + 0.9  # the store's clock, read a moment later
    assert await store.claim(again.jti, again.expires_at) is False
    clock.now = ticket.expires_at + 1  # the verifier now refuses it anyway
    with pytest.raises(TicketExpired):
        verifier.verify(token)


async def test_with_no_margin_an_entry_is_kept_through_its_expiry() -> None:
    clock = Clock()
    store = MemoryReplayStore(margin=0, clock=clock)
    await store.claim("9" * 32, clock.now + 35)
    clock.now += 35
    assert await store.claim("9" * 32, clock.now + 35) is False
    clock.now += 0.001
    assert await store.claim("9" * 32, clock.now + 35) is True


async def test_an_entry_behind_a_later_expiring_head_is_dropped_late_never_early() -> None:
    clock = Clock()
    store = MemoryReplayStore(margin=0, clock=clock)
    await store.claim("a" * 32, clock.now + 30)  # claimed first, expires last
    await store.claim("b" * 32, clock.now + 5)  # an older ticket, claimed second
    clock.now += 10
    assert await store.claim("b" * 32, clock.now + 5) is False  # kept: never early
    clock.now += 21
    assert await store.claim("c" * 32, clock.now + 5) is True
    assert len(store) == 1  # both gone once the head expired


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
    # Once they expire (and their 1 s margin passes) there is room again.
    clock.now += 36.5
    assert await store.claim("e" * 32, clock.now + 35)


async def test_size_stays_flat_under_churn() -> None:
    clock = Clock()
    store = MemoryReplayStore(clock=clock)
    peak = 0
    for i in range(200_000):
        if i % 1000 == 0:
            clock.now += 1.0  # 1000 tickets a second, each kept 35 s + 1 s margin
        await store.claim(f"{i:032x}", clock.now + 35)
        peak = max(peak, len(store))
    assert peak <= 37_000
    assert len(store._order) == len(store)


async def test_close_forgets_everything() -> None:
    store = MemoryReplayStore()
    await store.claim("f" * 32, 9e9)
    await store.close()
    assert len(store) == 0


def test_cap_must_be_positive() -> None:
    with pytest.raises(ValueError):
        MemoryReplayStore(max_entries=0)


@pytest.mark.parametrize("margin", [-1.0, float("nan"), float("inf")])
def test_margin_must_be_zero_or_more(margin: float) -> None:
    with pytest.raises(ValueError):
        MemoryReplayStore(margin=margin)
