"""In-process replay set: the embedded default for a single worker."""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable

from ..exceptions import StoreUnavailable
from .base import ReplayStore

__all__ = ["DEFAULT_MARGIN", "DEFAULT_MAX_ENTRIES", "MemoryReplayStore"]

DEFAULT_MAX_ENTRIES = 1_000_000
#: Seconds an entry outlives its ticket (see the class docstring).
DEFAULT_MARGIN = 1.0


class MemoryReplayStore(ReplayStore):
    """A dict of ``jti -> expires_at`` with expiry and a hard cap.

    Claims are atomic because they never await: within one event loop no
    other task runs between the lookup and the insert. A deque keeps the ids
    in claim order, and each claim pops ids from its front while they are
    past their expiry. Claim order is nearly expiry order (a ticket is
    claimed within its lifetime), so an entry is never dropped early and at
    worst outstays its expiry by one ticket lifetime behind a later-expiring
    head. That is O(1) amortised and keeps memory flat under any number of
    tickets over time. With ``max_entries`` live entries held, a new claim raises
    :class:`StoreUnavailable` (HTTP 503) rather than evict a live entry,
    which would reopen that ticket for replay.

    Replay protection is per process: under several workers or hosts use
    :class:`~sanic_wsauth.stores.redis.RedisReplayStore`.

    An entry is kept through its ticket's ``expires_at`` (the verifier still
    accepts a ticket at that very second) and ``margin`` seconds more: the
    verifier reads its clock a moment before this store does.

    Args:
        max_entries: Hard cap on live entries.
        margin: Seconds an entry is kept after its ticket's ``expires_at``.
        clock: Returns the current time in seconds; injected by tests.
    """

    shared = False

    def __init__(
        self,
        *,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        margin: float = DEFAULT_MARGIN,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        if not 0 <= margin < math.inf:  # NaN fails both comparisons
            raise ValueError("margin must be a finite number of seconds, zero or more")
        self.max_entries = max_entries
        self.margin = float(margin)
        self._clock = clock
        self._expiry: dict[str, float] = {}
        self._order: deque[str] = deque()

    def __len__(self) -> int:
        return len(self._expiry)

    def purge(self) -> int:
        """Drop entries past their expiry and margin; return how many were dropped."""
        now = self._clock()
        expiry, order = self._expiry, self._order
        dropped = 0
        while order:
            jti = order[0]
            expires_at = expiry.get(jti)
            if expires_at is not None and expires_at >= now:
                break
            order.popleft()
            if expires_at is not None:
                del expiry[jti]
                dropped += 1
        return dropped

    async def claim(self, jti: str, expires_at: float) -> bool:
        expiry = self._expiry
        order = self._order
        if order:
            # The oldest entry expires first: purge only when it is due (or gone).
            head = expiry.get(order[0])
            if head is None or head < self._clock():
                self.purge()
        if jti in expiry:
            return False
        if len(expiry) >= self.max_entries:
            raise StoreUnavailable("replay set is full")
        expiry[jti] = expires_at + self.margin
        self._order.append(jti)
        return True

    async def close(self) -> None:
        self._expiry.clear()
        self._order.clear()
