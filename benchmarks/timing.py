"""Interleaved rounds and the statistics every section reports."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Mapping, Sequence

__all__ = ["Batch", "calibrate", "interleave", "median", "percentile", "median_ratio"]

#: ``batch(n)`` performs an operation ``n`` times and returns elapsed seconds.
Batch = Callable[[int], float]


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def percentile(values: Sequence[float], fraction: float) -> float:
    """The nearest-rank percentile (``fraction`` in 0..1) of ``values``."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, int(round(fraction * len(ordered) + 0.5)) - 1))
    return float(ordered[rank])


def calibrate(
    batch: Batch, target_seconds: float, *, start: int = 16, limit: int = 2_000_000
) -> int:
    """Return an ``n`` for which ``batch(n)`` takes about ``target_seconds``."""
    n = start
    while n < limit:
        elapsed = batch(n)
        if elapsed >= target_seconds / 4:
            return max(1, min(limit, int(n * target_seconds / elapsed)))
        n *= 4
    return limit


def interleave(
    batches: Mapping[str, Batch], counts: Mapping[str, int], rounds: int
) -> dict[str, list[float]]:
    """Run every batch once per round, rotating the order; seconds per op by round."""
    names = list(batches)
    per_op: dict[str, list[float]] = {name: [] for name in names}
    for index in range(rounds):
        shift = index % len(names)
        for name in names[shift:] + names[:shift]:
            n = counts[name]
            per_op[name].append(batches[name](n) / n)
    return per_op


def median_ratio(
    per_round: Mapping[str, Sequence[float]], numerator: str, denominator: str
) -> float:
    """Median over rounds of ``numerator / denominator`` measured in the same round."""
    pairs = zip(per_round[numerator], per_round[denominator], strict=False)
    return median([a / b for a, b in pairs if b > 0])
