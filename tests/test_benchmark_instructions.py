"""The instruction-count benchmark: its dump parser, its arithmetic, its report, and
one real run (``python -m benchmarks.instructions --quick``) end to end."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.callgrind import DumpCost, parse_dump
from benchmarks.instructions import Measurement, ratio, render_markdown, summarize

from .conftest import skip_or_fail

ROOT = Path(__file__).resolve().parent.parent

# A callgrind 3.19 dump as ``callgrind_control -d`` writes it (cut down from a
# redis-server dump): ``summary: 0`` at the top, the real total in ``totals:``,
# names compressed (``(148) serverCron`` defines id 148, ``(148)`` refers to it),
# and after each ``calls=`` line the call's inclusive cost.
DUMP = """\
# callgrind format
version: 1
creator: callgrind-3.19.0
pid: 7759
cmd:  redis-server --port 52741 --hz 1
part: 1

desc: Timerange: Basic block 0 - 662563
desc: Trigger: dump

positions: line
events: Ir
summary: 0


ob=(3) ???
fl=(4) ???
fn=(942) 0x00000000001681c8
0 1507
cob=(4) /usr/lib/x86_64-linux-gnu/libjemalloc.so.2
cfi=(26) ???
cfn=(944) malloc
calls=1507 0
0 55807

fn=(10) aeProcessEvents
0 4010
cfn=(148) serverCron
calls=6 0
0 746739
0 18
cfn=(944)
calls=3 0
0 120

fn=(148)
0 78
cfn=(944)
calls=6 0
0 3114

fn=(20) beforeSleep
+2 7
cfn=(148)
calls=1 0
-1 1000
* 5

totals: 812398
"""


def test_the_total_is_the_totals_line_not_the_zero_summary() -> None:
    assert parse_dump(DUMP) == DumpCost(total=812_398, excluded=0)


def test_an_excluded_function_costs_its_inclusive_cost_at_every_call_site() -> None:
    # serverCron: named at its first call, then referred to by id alone; the
    # cost lines inside its own body (fn=(148)) are part of the inclusive cost.
    cost = parse_dump(DUMP, ["serverCron"])
    assert cost.excluded == 746_739 + 1000
    assert cost.counted == 812_398 - 747_739
    assert parse_dump(DUMP, ["malloc"]).excluded == 55_807 + 120 + 3114


def test_the_counted_event_is_picked_by_its_column() -> None:
    text = DUMP.replace("events: Ir", "events: Dr Ir").replace("totals: 812398", "totals: 5 812398")
    text = text.replace("0 746739", "0 9 746739")
    assert parse_dump(text, ["serverCron"]).total == 812_398
    assert parse_dump(text, ["serverCron"]).excluded == 746_739  # the other site has no Ir
    assert parse_dump(text, event="Dr").total == 5


def test_without_totals_the_summary_is_the_total() -> None:
    assert parse_dump("events: Ir\nsummary: 1234\n").total == 1234


def test_text_that_is_not_a_dump_is_refused() -> None:
    with pytest.raises(ValueError, match="not a callgrind dump"):
        parse_dump("events: Ir\nfn=(1) main\n0 5\n")


@pytest.fixture
def valgrind() -> None:
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        skip_or_fail("valgrind is not on PATH; install it (apt-get install valgrind)")


def test_a_real_dump_parses_to_callgrind_annotates_total(valgrind: None, tmp_path: Path) -> None:
    out = tmp_path / "true.out"
    subprocess.run(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", "/bin/true"],
        check=True,
        capture_output=True,
        timeout=60,
    )
    annotated = subprocess.run(
        ["callgrind_annotate", str(out)], check=True, capture_output=True, text=True, timeout=60
    ).stdout
    (line,) = [line for line in annotated.splitlines() if "PROGRAM TOTALS" in line]
    expected = int(line.split()[0].replace(",", ""))
    cost = parse_dump(out.read_text(), ["_dl_start"])
    assert cost.total == expected > 0
    assert 0 < cost.excluded < cost.total  # the dynamic loader's start-up


def _measurements() -> list[Measurement]:
    return [
        Measurement("public", "no auth", 100, server=1_000_000, client=2_000_000),
        Measurement("public-b", "no auth, again", 100, server=1_000_200, client=1_999_800),
        Measurement("memory", "ours, memory", 100, server=1_250_000, client=2_050_000),
        Measurement(
            "redis",
            "ours, Redis",
            50,
            server=700_000,
            client=1_025_000,
            redis=DumpCost(total=900_000, excluded=275_000),
        ),
    ]


def test_per_cycle_figures_and_ratios_to_the_baseline() -> None:
    summary = summarize(_measurements())
    public = summary["variants"]["public"]
    assert public["per_cycle"] == {
        "server": 10_000,
        "client": 20_000,
        "redis": None,
        "total": 30_000,
    }
    assert public["ratios"] == {"server": 1.0, "total": 1.0}
    memory = summary["variants"]["memory"]
    assert memory["ratios"]["server"] == pytest.approx(10_000 / 12_500)
    assert memory["ratios"]["total"] == pytest.approx(30_000 / 33_000)
    redis = summary["variants"]["redis"]  # its own cycle count; serverCron left out
    assert redis["per_cycle"] == {
        "server": 14_000,
        "client": 20_500,
        "redis": 12_500,
        "total": 47_000,
    }
    assert (redis["redis_ir"], redis["redis_cron_ir"]) == (625_000, 275_000)
    assert redis["ratios"]["total"] == pytest.approx(30_000 / 47_000)
    assert summary["aa"]["server"] == pytest.approx(10_000 / 10_002)
    assert summary["aa"]["client"] == pytest.approx(20_000 / 19_998)
    assert summary["aa"]["total"] == pytest.approx(30_000 / 30_000)


def test_without_a_baseline_or_control_the_ratios_are_missing() -> None:
    summary = summarize(_measurements()[2:])
    assert math.isnan(summary["variants"]["memory"]["ratios"]["server"])
    assert summary["aa"] is None
    assert math.isnan(ratio(1.0, 0.0)) and math.isnan(ratio(None, 1.0))
    assert math.isnan(ratio(1.0, None)) and ratio(3.0, 2.0) == 1.5


def test_the_markdown_has_a_row_per_variant_and_the_control() -> None:
    meta = {
        "cycles": 100,
        "warmup": 10,
        "valgrind": "valgrind-3.19.0",
        "python": "3.11.7",
        "redis_server": "7.0.15",
        "elapsed_s": 61.4,
        "command": "python -m benchmarks.instructions",
    }
    markdown = render_markdown(summarize(_measurements()), meta)
    rows = [line for line in markdown.splitlines() if line.startswith("| ")]
    assert rows[0].startswith("| configuration | server | client | redis-server | total |")
    assert rows[1] == "| public — no auth | 10,000 | 20,000 | – | 30,000 | 1.0000 | 1.0000 |"
    assert rows[3] == "| memory — ours, memory | 12,500 | 20,500 | – | 33,000 | 0.8000 | 0.9091 |"
    assert (
        rows[4] == "| redis — ours, Redis | 14,000 | 20,500 | 12,500 | 47,000 | 0.7143 | 0.6383 |"
    )
    assert "A/A control (public / public-b" in markdown and "server 0.9998" in markdown
    assert "valgrind-3.19.0, Python 3.11.7, redis-server 7.0.15" in markdown
    assert "100 cycles, 10 warm-up; 61 s in all" in markdown


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_quick_run_counts_real_processes_end_to_end(valgrind: None, tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.instructions", "--quick", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=140,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads((tmp_path / "instructions.json").read_text())
    assert (data["cycles"], data["warmup"]) == (20, 5)
    assert data["valgrind"].startswith("valgrind-") and data["python"]
    public, memory = data["variants"]["public"], data["variants"]["memory"]
    for row in (public, memory):
        assert row["server_ir"] > 0 and row["client_ir"] > 0 and row["redis_ir"] is None
        per = row["per_cycle"]
        assert per["total"] == pytest.approx(per["server"] + per["client"])
    # Verifying and claiming a ticket is work the @public route does not do.
    assert memory["per_cycle"]["server"] > public["per_cycle"]["server"]
    assert 0 < memory["ratios"]["server"] < 1 == public["ratios"]["server"]
    markdown = (tmp_path / "instructions.md").read_text()
    assert "| public — no auth (@public route) |" in markdown
    assert "| memory — ours, memory store |" in markdown
    assert markdown in proc.stdout
