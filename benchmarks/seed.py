"""The seed's design, rebuilt for comparison: an opaque id looked up in a cache.

The seed issued ``uuid4()`` strings, kept them in a TTL cache (in process, or
in Redis with ``SET ... EX`` at issue and ``GETDEL`` at the handshake), and
accepted a handshake when the lookup found (and removed) the id.
"""

from __future__ import annotations

import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

__all__ = ["SEED_TTL", "RedisTicketCache", "TTLTicketCache"]

SEED_TTL = 30


class TTLTicketCache:
    """The in-process variant: id -> (subject, expires_at), oldest first."""

    def __init__(self, *, ttl: float = SEED_TTL, clock: Callable[[], float] = time.time) -> None:
        self.ttl = ttl
        self._clock = clock
        self._entries: OrderedDict[str, tuple[str, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def issue(self, subject: str) -> str:
        now = self._clock()
        entries = self._entries
        while entries:
            oldest = next(iter(entries.values()))
            if oldest[1] > now:
                break
            entries.popitem(last=False)
        token = str(uuid.uuid4())
        entries[token] = (subject, now + self.ttl)
        return token

    def consume(self, token: str) -> str | None:
        entry = self._entries.pop(token, None)
        if entry is None or entry[1] <= self._clock():
            return None
        return entry[0]


class RedisTicketCache:
    """The Redis variant: ``SET key subject EX ttl`` at issue, ``GETDEL`` at use."""

    def __init__(self, client: Any, *, prefix: str, ttl: int = SEED_TTL) -> None:
        self._client = client
        self.prefix = prefix
        self.ttl = ttl

    async def issue(self, subject: str) -> str:
        token = str(uuid.uuid4())
        await self._client.set(self.prefix + token, subject, ex=self.ttl)
        return token

    async def consume(self, token: str) -> str | None:
        value = await self._client.getdel(self.prefix + token)
        if value is None:
            return None
        return value.decode() if isinstance(value, bytes) else str(value)
