"""How steady the machine's CPU is: one fixed piece of pure-Python work, timed over and over.

On a shared or throttled virtual machine the same work can take twice as long
from one tenth of a second to the next, with nothing else running. The
end-to-end windows last about a second, so such swings land in some windows
and not others; this probe tells the reader of a run how large they were.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from .timing import median, percentile

__all__ = ["WORK_ITERATIONS", "probe", "summarize"]

#: One slice of work: about 5 to 20 ms of interpreted arithmetic on current CPUs.
WORK_ITERATIONS = 100_000
#: A slice counts as slow when it takes this much longer than the fastest.
SLOW_FACTOR = 1.25


def _work(iterations: int) -> int:
    total = 0
    for i in range(iterations):
        total += i * i
    return total


def summarize(durations: Sequence[float]) -> dict[str, Any]:
    """The spread of ``durations`` (seconds each) of one fixed piece of work."""
    if not durations:
        return {"slices": 0}
    fastest = min(durations)
    return {
        "slices": len(durations),
        "min_ms": fastest * 1e3,
        "median_ms": median(durations) * 1e3,
        "p90_ms": percentile(durations, 0.90) * 1e3,
        "max_ms": max(durations) * 1e3,
        "slowest_over_fastest": max(durations) / fastest if fastest > 0 else float("nan"),
        "slow_share": sum(1 for d in durations if d > SLOW_FACTOR * fastest) / len(durations),
    }


def probe(
    slices: int,
    *,
    iterations: int = WORK_ITERATIONS,
    work: Callable[[int], object] = _work,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, Any]:
    """Time ``slices`` runs of the same work back to back; summarize the spread."""
    durations: list[float] = []
    for _ in range(slices):
        start = clock()
        work(iterations)
        durations.append(clock() - start)
    return summarize(durations)
