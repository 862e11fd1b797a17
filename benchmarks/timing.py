"""Interleaved rounds and the statistics every section reports."""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Mapping, Sequence

__all__ = [
    "Batch",
    "calibrate",
    "interleave",
    "median",
    "median_interval",
    "median_ratio",
    "percentile",
    "ratios",
]

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


def ratios(
    per_round: Mapping[str, Sequence[float]], numerator: str, denominator: str
) -> list[float]:
    """``numerator / denominator`` for every round, both measured in that round."""
    pairs = zip(per_round[numerator], per_round[denominator], strict=False)
    return [a / b for a, b in pairs if b > 0]


def median_ratio(
    per_round: Mapping[str, Sequence[float]], numerator: str, denominator: str
) -> float:
    """Median over rounds of ``numerator / denominator`` measured in the same round."""
    return median(ratios(per_round, numerator, denominator))


def _below(k: int, n: int) -> float:
    """P(X < k) for X ~ Binomial(n, 1/2)."""
    return sum(math.comb(n, i) for i in range(k)) / (1 << n)


def median_interval(
    values: Sequence[float], confidence: float = 0.95
) -> tuple[float, float, float]:
    """A distribution-free confidence interval for the median of ``values``.

    The order statistics ``(x_(k), x_(n+1-k))`` for the largest ``k`` with
    ``2 * P(Binomial(n, 1/2) < k) <= 1 - confidence``: the interval covers the
    true median with probability at least ``confidence``, whatever the
    distribution (no bootstrap, no normality). Returns ``(low, high, coverage)``;
    with too few values for the confidence asked, the whole range and its coverage.
    """
    ordered = sorted(values)
    n = len(ordered)
    if n == 0:
        return float("nan"), float("nan"), 0.0
    k = 1
    while k + 1 <= (n + 1) // 2 and 2 * _below(k + 1, n) <= 1 - confidence:
        k += 1
    return float(ordered[k - 1]), float(ordered[n - k]), 1 - 2 * _below(k, n)
