"""Memory of the in-memory replay set: bytes per live entry, RSS under churn.

Runs in a fresh subprocess (``python -m benchmarks.memory``) so that RSS is
the store's and not the harness's. The clock is injected: a million tickets
pass through in simulated time, so entries really expire and are purged by
the store's own claim path.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import subprocess
import sys
import tracemalloc
from pathlib import Path
from typing import Any

__all__ = ["rss_bytes", "run_memory"]

ROOT = Path(__file__).resolve().parent.parent
#: Seconds a ticket's entry lives: DEFAULT_MAX_AGE + DEFAULT_LEEWAY.
LIFETIME = 35


def rss_bytes() -> int:
    """Resident set size of this process (Linux ``/proc``)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0  # pragma: no cover - not Linux


class _Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def _bytes_per_entry(entries: int) -> dict[str, Any]:
    from sanic_wsauth.stores.memory import MemoryReplayStore
    from sanic_wsauth.tokens import _new_jti

    clock = _Clock(1_700_000_000.0)
    store = MemoryReplayStore(clock=clock, max_entries=max(entries, 1))
    base = int(clock.now)
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for index in range(entries):
        # A fresh id string and a fresh expiry int per ticket, as verify makes.
        await store.claim(_new_jti(), base + LIFETIME + index // 1000)
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    assert len(store) == entries
    total = after - before
    jti_bytes = sys.getsizeof("0" * 32)
    return {
        "entries": entries,
        "bytes_per_entry": total / entries,
        "jti_string_bytes": jti_bytes,
        "structure_bytes_per_entry": total / entries - jti_bytes,
    }


async def _churn(tickets: int, rate: int, checkpoints: int) -> dict[str, Any]:
    from sanic_wsauth.stores.memory import MemoryReplayStore
    from sanic_wsauth.tokens import _new_jti

    clock = _Clock(1_700_000_000.0)
    store = MemoryReplayStore(clock=clock)
    step = 1.0 / rate
    every = max(1, tickets // checkpoints)
    samples: list[dict[str, float]] = []
    gc.collect()
    start_rss = rss_bytes()
    for index in range(1, tickets + 1):
        clock.now += step
        issued = int(clock.now)
        if not await store.claim(_new_jti(), issued + LIFETIME):
            raise AssertionError("fresh id refused")
        if index % every == 0:
            samples.append({"tickets": index, "live": len(store), "rss": rss_bytes()})
    # Steady state begins once the first tickets expire: LIFETIME * rate claims in.
    steady = [s for s in samples if s["tickets"] >= 2 * LIFETIME * rate] or samples[-1:]
    first, last = steady[0], samples[-1]
    growth = last["rss"] - first["rss"]
    # A leak grows with the number of tickets: compare the two halves.
    half = next(s for s in samples if s["tickets"] >= tickets / 2)
    return {
        "tickets": tickets,
        "rate_per_s": rate,
        "lifetime_s": LIFETIME,
        "start_rss": start_rss,
        "steady_rss": first["rss"],
        "final_rss": last["rss"],
        "rss_growth_after_steady": growth,
        "rss_growth_fraction": growth / first["rss"],
        "half_rss": half["rss"],
        "rss_growth_second_half": last["rss"] - half["rss"],
        "max_live": max(s["live"] for s in samples),
        "final_live": last["live"],
        "samples": samples,
    }


def _child(args: argparse.Namespace) -> None:
    if args.part == "per_entry":
        sizes = [asyncio.run(_bytes_per_entry(int(n))) for n in args.entries.split(",")]
        per_entry = dict(max(sizes, key=lambda size: float(size["bytes_per_entry"])))
        per_entry["sizes"] = sizes
        json.dump(per_entry, sys.stdout)
    else:
        json.dump(asyncio.run(_churn(args.tickets, args.rate, args.checkpoints)), sys.stdout)


def _run_part(*args: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.memory", *args],
        cwd=ROOT,
        capture_output=True,
        check=True,
        timeout=600,
    )
    data: dict[str, Any] = json.loads(out.stdout)
    return data


def run_memory(*, quick: bool) -> dict[str, Any]:
    """Run each part in a fresh interpreter (so RSS is the churn's own)."""
    if quick:
        entries, churn = "2000,5000", ["--tickets", "20000", "--rate", "200"]
    else:
        entries, churn = "10000,50000,100000,1000000", ["--tickets", "1000000", "--rate", "2000"]
    return {
        "per_entry": _run_part("--part", "per_entry", "--entries", entries),
        "churn": _run_part("--part", "churn", *churn),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.memory")
    parser.add_argument("--part", choices=("per_entry", "churn"), required=True)
    parser.add_argument("--entries", default="100000", help="live entry counts, comma-separated")
    parser.add_argument("--tickets", type=int, default=1_000_000)
    parser.add_argument("--rate", type=int, default=2000, help="tickets per simulated second")
    parser.add_argument("--checkpoints", type=int, default=20)
    _child(parser.parse_args(argv))


if __name__ == "__main__":
    main()
