"""The benchmark's statistics: the median's confidence interval and the verdicts."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from benchmarks.report import _target
from benchmarks.timing import median_interval, ratios


def _binomial_below(k: int, n: int) -> float:
    """P(X < k), X ~ Binomial(n, 1/2), by counting subsets (independent of the code)."""
    return sum(1 for mask in range(1 << n) if bin(mask).count("1") < k) / (1 << n)


def test_ten_rounds_give_the_second_and_ninth_values() -> None:
    values = [0.91, 1.2, 0.88, 0.95, 0.97, 0.93, 1.01, 0.99, 0.90, 0.96]
    low, high, coverage = median_interval(values)
    assert (low, high) == (0.90, 1.01)  # 2nd and 9th of the sorted ten
    assert coverage == pytest.approx(1 - 2 * 11 / 1024)


@given(n=st.integers(min_value=1, max_value=16), confidence=st.sampled_from([0.8, 0.9, 0.95]))
def test_the_interval_is_the_narrowest_with_the_coverage_asked(n: int, confidence: float) -> None:
    values = [float(i) for i in range(n)]
    low, high, coverage = median_interval(values, confidence)
    k = int(low) + 1  # the k-th smallest value is k - 1 here
    assert high == n - k  # symmetric order statistics
    assert coverage == pytest.approx(1 - 2 * _binomial_below(k, n))
    if k > 1:  # no narrower pair would do
        assert coverage >= confidence
    if k + 1 <= (n + 1) // 2:
        assert 1 - 2 * _binomial_below(k + 1, n) < confidence


def test_the_interval_covers_the_true_median_as_often_as_it_says() -> None:
    # Ten rounds from a skewed distribution (exponential, median ln 2).
    rng = random.Random(20261129)
    trials, hits = 4000, 0
    coverage = 0.0
    for _ in range(trials):
        low, high, coverage = median_interval([rng.expovariate(1.0) for _ in range(10)])
        hits += low <= math.log(2) <= high
    assert coverage == pytest.approx(0.9785, abs=1e-4)
    assert abs(hits / trials - coverage) < 0.01


def test_no_values_give_no_interval() -> None:
    low, high, coverage = median_interval([])
    assert math.isnan(low) and math.isnan(high) and coverage == 0.0


def test_ratios_pair_the_rounds_and_skip_empty_baselines() -> None:
    per_round = {"a": [2.0, 3.0, 4.0], "b": [1.0, 0.0, 2.0]}
    assert ratios(per_round, "a", "b") == [2.0, 2.0]


@pytest.mark.parametrize(
    ("rounds", "met", "conclusive"),
    [
        ([0.96, 0.97, 0.98, 0.99, 1.0, 1.01, 1.02, 1.03, 1.04, 1.05], True, True),
        ([0.80, 0.85, 0.90, 0.93, 0.96, 0.97, 0.99, 1.0, 1.1, 1.2], True, False),
        ([0.80, 0.85, 0.90, 0.91, 0.92, 0.93, 0.94, 0.96, 0.97, 0.99], False, False),
        ([0.80, 0.81, 0.82, 0.83, 0.84, 0.85, 0.86, 0.87, 0.88, 0.89], False, True),
    ],
)
def test_a_target_says_whether_its_rounds_settle_it(
    rounds: list[float], met: bool, conclusive: bool
) -> None:
    median = sorted(rounds)[4] / 2 + sorted(rounds)[5] / 2
    target = _target("handshakes", median, ">=", 0.95, "", rounds)
    assert target["met"] is met
    assert target["conclusive"] is conclusive
    low, high = target["interval"]
    assert low <= median <= high


def test_an_upper_bound_target_reads_the_interval_the_other_way() -> None:
    rounds = [1.0, 1.1, 1.2, 1.3, 1.4, 1.5, 1.6, 1.7, 1.8, 2.6]
    target = _target("verify vs the floor", 1.45, "<=", 2.5, "", rounds)
    assert target["met"] is True and target["conclusive"] is True
    target = _target("verify vs the floor", 1.45, "<=", 1.5, "", rounds)
    assert target["met"] is True and target["conclusive"] is False


@pytest.mark.parametrize("rounds", [[3.0], [3.0, 3.1, 3.2, 3.3, 3.4]])
def test_too_few_rounds_settle_nothing(rounds: list[float]) -> None:
    # One round, or five (whose whole range covers the median 94% of the time).
    target = _target("handshakes", 3.2, ">=", 0.95, "", rounds)
    assert target["met"] is True
    assert target["conclusive"] is False
    assert target["interval_coverage"] < 0.95
