"""The benchmark suite still runs: ``python -m benchmarks --quick`` end to end.

Tiny counts, one round, one worker: this keeps the scripts from rotting. It
asserts that every section produced well-formed results, never how fast
anything was.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow


def _redis_up() -> bool:
    try:
        import redis

        client = redis.Redis(host="127.0.0.1", port=6379, socket_timeout=1)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:  # noqa: BLE001 - any failure means "not available"
        return False


@pytest.mark.timeout(180)
def test_quick_benchmark_writes_well_formed_results(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=170,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]

    data = json.loads((tmp_path / "results.json").read_text())
    assert data["settings"]["quick"] is True
    assert data["machine"]["nproc"] >= 1 and data["machine"]["python"]
    redis = _redis_up()

    cases = data["micro"]["cases"]
    expected = {
        "ours.issue",
        "stock.dumps",
        "pyjwt.encode",
        "seed.issue.memory",
        "ours.verify",
        "stock.loads",
        "pyjwt.decode",
        "floor",
        "seed.verify.memory",
        "ours.claim.memory",
        "ours.verify+claim.memory",
    }
    if redis:
        expected |= {"ours.claim.redis", "redis.set_nx", "seed.issue.redis", "seed.verify.redis"}
    assert expected <= set(cases)
    for name, case in cases.items():
        assert case["median_us"] > 0 and case["rounds_us"], name
        assert case["batch"] >= 1, name
    for value in data["micro"]["ratios"].values():
        assert value > 0

    e2e = data["e2e"]["1"]
    configs = {"public", "public-b", "memory", "issue+memory"}
    if redis:
        configs |= {"redis", "seed", "issue+redis", "issue+seed"}
    assert configs <= set(e2e)
    for name in configs:
        row = e2e[name]
        # Every cycle of every client completed: connect, echo, close.
        assert row["errors"] == 0, (name, row["error_samples"])
        assert row["cycles"] == 2 * 10, name  # 2 client processes x 10 cycles
        assert row["cycles_per_s"] > 0 and 0 < row["p50_ms"] <= row["p99_ms"], name

    memory = data["memory"]
    assert 0 < memory["per_entry"]["bytes_per_entry"] < 10_000
    churn = memory["churn"]
    assert churn["tickets"] == 20_000
    # The injected clock really expired entries: far fewer live than claimed.
    assert churn["max_live"] < churn["tickets"] / 2

    names = {t["target"] for t in data["targets"]}
    assert any("verify vs stock" in n for n in names)
    assert any("bytes per live entry" in n for n in names)
    assert all(isinstance(t["met"], bool) for t in data["targets"])

    (control,) = data["controls"]  # the A/A control: a second no-auth server
    assert control["workers"] == 1 and control["ratio"] > 0
    low, high = control["interval"]
    assert low <= control["ratio"] <= high and control["resolution"] >= 0
    for when in ("before", "after"):
        steady = data["steadiness"][when]
        assert steady["slices"] == 20
        assert 0 < steady["min_ms"] <= steady["median_ms"] <= steady["max_ms"]

    markdown = (tmp_path / "results.md").read_text()
    for heading in (
        "## Targets",
        "### Resolution: the A/A control",
        "Machine steadiness",
        "## Micro",
        "## End to end",
        "## Memory",
    ):
        assert heading in markdown
    assert "| ours, memory store |" in markdown

    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert not (tmp_path / "e2e.png").exists()
    else:
        assert (tmp_path / "e2e.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
