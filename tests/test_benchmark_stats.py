"""The benchmark's statistics: the median's interval, the verdicts, the A/A control
and the machine-steadiness probe."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from benchmarks.e2e import E2EResult
from benchmarks.report import _target, evaluate_controls, evaluate_targets, mark_resolution
from benchmarks.steadiness import probe, summarize
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


def _e2e(throughput: dict[str, list[float]]) -> E2EResult:
    result = E2EResult()
    result.throughput = throughput
    result.server_cpu = {name: [1e-3] * len(values) for name, values in throughput.items()}
    return result


def test_the_control_reports_how_far_two_identical_servers_stray() -> None:
    public = [1000.0] * 10
    # The second server's rounds: 0.90 .. 1.08 of the first.
    second = [1000.0 * r for r in (0.90, 0.92, 0.97, 0.99, 1.0, 1.0, 1.01, 1.02, 1.06, 1.08)]
    (control,) = evaluate_controls({1: _e2e({"public": public, "public-b": second})})
    assert control["workers"] == 1
    assert control["ratio"] == pytest.approx(1.0)
    assert control["interval"] == pytest.approx([0.92, 1.06])  # 2nd and 9th of ten
    assert control["resolution"] == pytest.approx(0.08)  # the farther end from 1


def test_no_control_without_its_second_server() -> None:
    assert evaluate_controls({1: _e2e({"public": [1.0] * 10})}) == []
    assert evaluate_controls(None) == []


@pytest.mark.parametrize(("memory", "flagged"), [(0.93, True), (0.85, False), (1.05, False)])
def test_targets_within_the_controls_reach_of_their_goal_are_flagged(
    memory: float, flagged: bool
) -> None:
    public = [1000.0] * 10
    second = [1000.0 * r for r in (0.90, 0.92, 0.97, 0.99, 1.0, 1.0, 1.01, 1.02, 1.06, 1.08)]
    e2e = {1: _e2e({"public": public, "public-b": second, "memory": [1000.0 * memory] * 10})}
    targets = evaluate_targets(None, e2e, None)
    mark_resolution(targets, evaluate_controls(e2e))
    (target,) = targets
    assert target["workers"] == 1 and target["bound"] == 0.95
    assert target["measured"] == pytest.approx(memory)
    # |0.93 - 0.95| < 0.08: this run cannot tell it from its goal.
    assert target["within_control_resolution"] is flagged


def test_steadiness_summary_of_known_durations() -> None:
    summary = summarize([0.010, 0.011, 0.020, 0.012, 0.010])
    assert summary["slices"] == 5
    assert summary["min_ms"] == pytest.approx(10.0)
    assert summary["median_ms"] == pytest.approx(11.0)
    assert summary["max_ms"] == pytest.approx(20.0)
    assert summary["slowest_over_fastest"] == pytest.approx(2.0)
    assert summary["slow_share"] == pytest.approx(0.2)  # only 20 ms > 1.25 x 10 ms
    assert summarize([]) == {"slices": 0}


def test_the_probe_times_each_slice_of_the_same_work() -> None:
    ticks = iter([0.0, 0.010, 0.010, 0.030, 0.030, 0.041])
    calls: list[int] = []
    summary = probe(3, iterations=7, work=calls.append, clock=lambda: next(ticks))
    assert calls == [7, 7, 7]
    assert summary["min_ms"] == pytest.approx(10.0)
    assert summary["max_ms"] == pytest.approx(20.0)
    assert summary["slow_share"] == pytest.approx(1 / 3)
