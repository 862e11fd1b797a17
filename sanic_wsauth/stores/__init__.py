"""Replay stores: remember each ticket id until its ticket expires.

``RedisReplayStore`` lives in :mod:`sanic_wsauth.stores.redis` and needs the
``redis`` extra; it is imported lazily so that this package loads without it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .base import ReplayStore
from .memory import MemoryReplayStore

if TYPE_CHECKING:
    from .redis import RedisReplayStore

__all__ = ["MemoryReplayStore", "RedisReplayStore", "ReplayStore"]


def __getattr__(name: str) -> Any:
    if name == "RedisReplayStore":
        from .redis import RedisReplayStore

        return RedisReplayStore
    raise AttributeError(name)
