"""The replay-store interface: one atomic "first time?" question per ticket."""

from __future__ import annotations

from abc import ABC, abstractmethod

__all__ = ["ReplayStore"]


class ReplayStore(ABC):
    """Remembers which ticket ids have been used, until their tickets expire.

    Implementations must make :meth:`claim` atomic: among any number of
    concurrent claims of one ``jti`` (across tasks, workers or hosts sharing
    the store) exactly one returns True. A store that cannot answer must raise
    :class:`~sanic_wsauth.exceptions.StoreUnavailable`, never return True:
    callers fail closed.
    """

    #: True when every worker and host that uses this store sees the same
    #: set (Redis); False for a per-process store (memory).
    shared: bool = False

    async def open(self) -> None:  # noqa: B027 - optional hook, no-op by default
        """Open connections; called once per worker before it serves."""

    @abstractmethod
    async def claim(self, jti: str, expires_at: float) -> bool:
        """Record ``jti`` as used until ``expires_at`` (seconds since the epoch).

        Returns:
            True the first time ``jti`` is claimed, False on every later claim
            while the entry lives.

        Raises:
            StoreUnavailable: the store could not record the claim.
        """

    @abstractmethod
    async def close(self) -> None:
        """Release connections; called once per worker after it stops."""
