"""Targets, and the results written as Markdown, JSON and a PNG chart."""

from __future__ import annotations

import json
import math
import os
import platform
import sys
from collections.abc import Mapping
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from .e2e import CONFIGS, E2EResult
from .micro import DESCRIPTIONS, MicroResult
from .timing import median, median_interval, median_ratio, ratios

__all__ = [
    "evaluate_controls",
    "evaluate_targets",
    "machine_info",
    "mark_resolution",
    "write_chart",
    "write_json",
    "write_markdown",
]

#: Flat means: over the second half of the churn, RSS grows by at most this much
#: (a leak of 2 bytes per ticket would show as 1 MiB over 500,000 tickets).
FLAT_SLACK_BYTES = 1 << 20
FLAT_SLACK_FRACTION = 0.02
#: Of the distribution-free interval reported for each ratio's median.
CONFIDENCE = 0.95


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:  # pragma: no cover - not Linux
        pass
    return platform.processor() or "unknown"


def _version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def _speedups() -> bool:
    from sanic_wsauth import tokens

    return tokens.SPEEDUPS


def machine_info(redis_version: str | None) -> dict[str, Any]:
    """What the numbers were measured on."""
    import ssl

    return {
        "nproc": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "openssl": ssl.OPENSSL_VERSION,
        "c_accelerator": _speedups(),
        "redis_server": redis_version or "unavailable",
        "packages": {
            name: _version(name)
            for name in ("sanic", "websockets", "itsdangerous", "redis", "PyJWT", "uvloop")
        },
    }


def _target(
    name: str,
    measured: float,
    op: str,
    bound: float,
    detail: str,
    rounds: list[float] | None = None,
) -> dict[str, Any]:
    """One target; with per-round values, also the median's confidence interval.

    ``measured`` decides ``met``. The interval says whether this run's rounds
    settle it: ``conclusive`` is False when the interval reaches across the goal,
    or when there are too few rounds for the confidence asked.
    """
    met = measured >= bound if op == ">=" else measured <= bound
    target: dict[str, Any] = {
        "target": name,
        "measured": measured,
        "goal": f"{op} {bound:g}",
        "bound": bound,
        "met": bool(met),
        "detail": detail,
    }
    if rounds:
        low, high, coverage = median_interval(rounds, CONFIDENCE)
        target["interval"] = [low, high]
        target["interval_coverage"] = coverage
        if op == ">=":
            clear = low >= bound or high < bound
        else:
            clear = high <= bound or low > bound
        # Too few rounds: even the whole range covers the median less often.
        target["conclusive"] = clear and coverage >= CONFIDENCE
    return target


def evaluate_targets(
    micro: MicroResult | None,
    e2e: Mapping[int, E2EResult] | None,
    memory: Mapping[str, Any] | None,
) -> list[dict[str, Any]]:
    """Every target of the issue that this run measured, met or not."""
    targets: list[dict[str, Any]] = []
    if micro is not None:
        cases = micro.to_json()["cases"]

        def us(name: str) -> str:
            return f"{cases[name]['median_us']:.2f} us"

        r = micro.ratios
        # Our verify as installed, then (when timed) its pure-Python path.
        for case, what in (
            ("ours.verify", "verify"),
            ("ours.verify.python", "verify, pure Python"),
        ):
            if case not in cases:
                continue
            targets.append(
                _target(
                    f"{what} vs stock itsdangerous loads (x faster)",
                    r[f"stock.loads / {case}"],
                    ">=",
                    2.0,
                    f"ours {us(case)}, stock {us('stock.loads')}",
                    ratios(micro.per_op, "stock.loads", case),
                )
            )
            targets.append(
                _target(
                    f"{what} vs the floor (x slower)",
                    r[f"{case} / floor"],
                    "<=",
                    2.5,
                    f"ours {us(case)}, floor {us('floor')}",
                    ratios(micro.per_op, case, "floor"),
                )
            )
        targets.append(
            _target(
                "issue vs stock itsdangerous dumps (x faster)",
                r["stock.dumps / ours.issue"],
                ">=",
                2.0,
                f"ours {us('ours.issue')}, stock {us('stock.dumps')}",
                ratios(micro.per_op, "stock.dumps", "ours.issue"),
            )
        )
    for workers, result in sorted((e2e or {}).items()):
        tp = result.throughput
        for name, base, bound, what in (
            ("memory", "public", 0.95, "authenticated handshakes, memory store, vs no auth"),
            ("redis", "public", 0.90, "authenticated handshakes, Redis store, vs no auth"),
            ("issue+redis", "issue+seed", 1.0, "issue-then-connect, ours Redis vs seed Redis"),
        ):
            if name in tp and base in tp:
                rounds = ratios(tp, name, base)
                targets.append(
                    _target(
                        f"{what} ({workers} worker{'s' if workers > 1 else ''})",
                        median(rounds),
                        ">=",
                        bound,
                        f"{result.summary(name)['cycles_per_s']:.0f} vs "
                        f"{result.summary(base)['cycles_per_s']:.0f} cycles/s (medians); "
                        f"server CPU per cycle {_cpu_ratio(result, name, base):.2f}x "
                        f"({result.summary(name)['server_cpu_us_per_cycle']:.0f} vs "
                        f"{result.summary(base)['server_cpu_us_per_cycle']:.0f} us)",
                        rounds,
                    )
                    | {"workers": workers}
                )
    if memory is not None:
        per_entry = memory["per_entry"]
        targets.append(
            _target(
                "memory replay set, bytes per live entry (worst measured size)",
                per_entry["bytes_per_entry"],
                "<=",
                200,
                f"at {per_entry['entries']:,} entries, incl. the "
                f"{per_entry['jti_string_bytes']}-byte jti string (tracemalloc)",
            )
        )
        churn = memory["churn"]
        slack = max(FLAT_SLACK_BYTES, FLAT_SLACK_FRACTION * churn["half_rss"])
        targets.append(
            {
                "target": f"memory replay set RSS flat after {churn['tickets']:,} tickets",
                "measured": churn["rss_growth_second_half"],
                "goal": f"growth <= {slack / 2**20:.1f} MiB over the second half",
                "met": churn["rss_growth_second_half"] <= slack,
                "detail": (
                    f"RSS {churn['steady_rss'] / 2**20:.1f} MiB once {churn['max_live']:,} "
                    f"entries were live, {churn['half_rss'] / 2**20:.1f} MiB at half way, "
                    f"{churn['final_rss'] / 2**20:.1f} MiB at the end"
                ),
            }
        )
    return targets


#: The A/A control: a second no-auth server, and the one it is compared with.
CONTROL, CONTROL_BASE = "public-b", "public"


def evaluate_controls(e2e: Mapping[int, E2EResult] | None) -> list[dict[str, Any]]:
    """The A/A control per worker count: two identical servers, ratio and interval.

    Identical servers have a true ratio of 1, so how far the control's interval
    reaches from 1 (``resolution``) is the smallest difference this run can tell
    from noise on this machine.
    """
    controls: list[dict[str, Any]] = []
    for workers, result in sorted((e2e or {}).items()):
        tp = result.throughput
        if CONTROL not in tp or CONTROL_BASE not in tp:
            continue
        rounds = ratios(tp, CONTROL, CONTROL_BASE)
        low, high, coverage = median_interval(rounds, CONFIDENCE)
        controls.append(
            {
                "workers": workers,
                "ratio": median(rounds),
                "interval": [low, high],
                "interval_coverage": coverage,
                "resolution": max(1 - low, high - 1),
                "server_cpu_ratio": _cpu_ratio(result, CONTROL, CONTROL_BASE),
                "rounds": rounds,
            }
        )
    return controls


def mark_resolution(targets: list[dict[str, Any]], controls: list[dict[str, Any]]) -> None:
    """Flag each end-to-end target that lies within its run's A/A resolution of its goal."""
    by_workers = {c["workers"]: c["resolution"] for c in controls}
    for target in targets:
        workers = target.get("workers")
        if workers in by_workers and not math.isnan(by_workers[workers]):
            margin = abs(target["measured"] - target["bound"])
            target["within_control_resolution"] = margin < by_workers[workers]


def _cpu_ratio(result: E2EResult, name: str, base: str) -> float:
    """Median per-round ratio of server CPU per cycle (variant over baseline)."""
    return median_ratio(result.server_cpu, name, base)


def _fmt(value: float, digits: int = 2) -> str:
    return f"{value:.{digits}f}" if value == value else "n/a"


def write_json(path: Path, data: Mapping[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")


def write_markdown(
    path: Path,
    *,
    machine: Mapping[str, Any],
    settings: Mapping[str, Any],
    micro: MicroResult | None,
    e2e: Mapping[int, E2EResult] | None,
    memory: Mapping[str, Any] | None,
    targets: list[dict[str, Any]],
    notes: list[str],
    command: str,
    controls: list[dict[str, Any]] | None = None,
    steadiness: Mapping[str, Mapping[str, Any]] | None = None,
) -> None:
    lines = ["# sanic-wsauth benchmark results", ""]
    lines += [
        f"Machine: {machine['nproc']} CPUs ({machine['cpu_model']}), "
        f"{machine['implementation']} {machine['python']}, {machine['openssl']}, "
        f"Redis {machine['redis_server']}; {machine['platform']}. C accelerator: "
        + ("built and used" if machine.get("c_accelerator") else "not in use (pure Python)")
        + ".",
        "",
        f"Command: `{command}`. Settings: "
        + ", ".join(f"{k}={v}" for k, v in settings.items())
        + ".",
        "",
    ]
    if steadiness:
        lines += _steadiness_lines(steadiness)
    if targets:
        lines += [
            "## Targets",
            "",
            "Ratios are medians of per-round ratios; in brackets, a distribution-free "
            f"{CONFIDENCE:.0%} confidence interval for that median (order statistics of "
            "the rounds). Where it reaches across the goal (or there are too few rounds "
            "for it), this run does not settle the target either way.",
            "",
            "| target | goal | measured | met | detail |",
            "|---|---|---|---|---|",
        ]
        for t in targets:
            measured = t["measured"]
            shown = f"{measured / 2**20:.2f} MiB" if "RSS" in t["target"] else _fmt(measured)
            verdict = "met" if t["met"] else "**not met**"
            caveats = []
            if "interval" in t:
                low, high = t["interval"]
                shown += f" [{_fmt(low)}, {_fmt(high)}]"
                if not t["conclusive"]:
                    caveats.append("not settled by this run's rounds")
            if t.get("within_control_resolution"):
                caveats.append("nearer its goal than the A/A control strays from 1")
            if caveats:
                verdict += f" ({'; '.join(caveats)})"
            lines.append(f"| {t['target']} | {t['goal']} | {shown} | {verdict} | {t['detail']} |")
        lines.append("")
    if controls:
        lines += _control_lines(controls)
    if micro is not None:
        data = micro.to_json()
        base = data["cases"]["ours.verify"]["median_us"]
        lines += [
            "## Micro: per operation",
            "",
            f"Median of {len(next(iter(micro.per_op.values())))} interleaved rounds; "
            '"x ours.verify" is relative to our verify.',
            "",
            "| case | what | median (us) | min (us) | x ours.verify |",
            "|---|---|---:|---:|---:|",
        ]
        for name, case in data["cases"].items():
            lines.append(
                f"| `{name}` | {DESCRIPTIONS.get(name, name)} | {_fmt(case['median_us'])} | "
                f"{_fmt(case['min_us'])} | {_fmt(case['median_us'] / base)} |"
            )
        lines += ["", "| ratio (median of per-round ratios) | value |", "|---|---:|"]
        lines += [f"| {k} | {_fmt(v)} |" for k, v in data["ratios"].items()]
        lines.append("")
    if e2e:
        lines += [
            "## End to end: connect / send / receive / close",
            "",
            "Cycles per second (median over rounds) and latency of a whole cycle "
            "(p50/p99 over every cycle). Handshake rows use tickets issued before the "
            "timed window; issue-then-connect rows POST for a ticket in every cycle. "
            '"ratio" is the median of per-round throughput ratios to the row\'s baseline '
            "(no auth for handshakes, the seed for issue-then-connect). Server CPU is "
            "user+system time of the server's processes (all workers) per cycle, read "
            "from /proc around each window: less sensitive than throughput to other load "
            "on the machine. Client CPU is that of the client processes, which share the "
            "same cores.",
            "",
            "| workers | configuration | cycles/s | p50 (ms) | p99 (ms) | ratio "
            "| server CPU (us/cycle) | client CPU (us/cycle) | errors |",
            "|---:|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for workers, result in sorted(e2e.items()):
            for config in CONFIGS:
                if config.name not in result.throughput:
                    continue
                s = result.summary(config.name)
                base = "public" if config.mode == "handshake" else "issue+seed"
                ratio = median_ratio(result.throughput, config.name, base)
                lines.append(
                    f"| {workers} | {config.label} | {s['cycles_per_s']:.0f} | "
                    f"{_fmt(s['p50_ms'])} | {_fmt(s['p99_ms'])} | {_fmt(ratio)} | "
                    f"{s['server_cpu_us_per_cycle']:.0f} | {s['client_cpu_us_per_cycle']:.0f} | "
                    f"{s['errors']} |"
                )
        lines.append("")
    if memory is not None:
        per_entry, churn = memory["per_entry"], memory["churn"]
        lines += [
            "## Memory: the in-memory replay set",
            "",
            "| live entries | bytes per entry (tracemalloc) | of which the jti string |",
            "|---:|---:|---:|",
        ]
        for size in per_entry["sizes"]:
            lines.append(
                f"| {size['entries']:,} | {_fmt(size['bytes_per_entry'], 1)} | "
                f"{size['jti_string_bytes']} |"
            )
        lines += [
            "",
            f"Churn: {churn['tickets']:,} tickets at {churn['rate_per_s']:,} per simulated "
            f"second (injected clock, {churn['lifetime_s']} s lifetime), in a fresh process.",
            "",
            "| tickets so far | live entries | RSS (MiB) |",
            "|---:|---:|---:|",
        ]
        samples = churn["samples"]
        shown = samples[:: max(1, len(samples) // 10)]
        if shown[-1] is not samples[-1]:
            shown.append(samples[-1])
        for s in shown:
            lines.append(f"| {s['tickets']:,} | {s['live']:,} | {s['rss'] / 2**20:.1f} |")
        lines.append("")
    if notes:
        lines += ["## Notes", ""] + [f"- {note}" for note in notes] + [""]
    path.write_text("\n".join(lines))


def _steadiness_lines(steadiness: Mapping[str, Mapping[str, Any]]) -> list[str]:
    lines = [
        "Machine steadiness: the same pure-Python work (a fixed loop), timed back to "
        "back, should take the same time every slice; on a steady machine the slowest "
        "slice is within a few percent of the fastest.",
        "",
        "| when | slices | fastest (ms) | median (ms) | p90 (ms) | slowest (ms) "
        "| slowest / fastest | slices > 1.25x the fastest |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for when, s in steadiness.items():
        if not s.get("slices"):
            continue
        lines.append(
            f"| {when} | {s['slices']} | {_fmt(s['min_ms'])} | {_fmt(s['median_ms'])} | "
            f"{_fmt(s['p90_ms'])} | {_fmt(s['max_ms'])} | {_fmt(s['slowest_over_fastest'])} | "
            f"{s['slow_share']:.0%} |"
        )
    return [*lines, ""]


def _control_lines(controls: list[dict[str, Any]]) -> list[str]:
    lines = [
        "### Resolution: the A/A control",
        "",
        "A second no-auth server, identical to the first, measured in every round like "
        "every configuration. Its true ratio to the first is 1, so how far its interval "
        "reaches from 1 is the smallest difference this run tells from noise: an "
        "end-to-end target whose median lies closer to its goal than that is flagged "
        "above.",
        "",
        "| workers | no auth (2nd server) / no auth | strays from 1 by up to "
        "| server CPU per cycle, ratio |",
        "|---:|---|---:|---:|",
    ]
    for c in controls:
        low, high = c["interval"]
        lines.append(
            f"| {c['workers']} | {_fmt(c['ratio'], 3)} [{_fmt(low)}, {_fmt(high)}] | "
            f"{_fmt(c['resolution'], 3)} | {_fmt(c['server_cpu_ratio'])} |"
        )
    return [*lines, ""]


def write_chart(path: Path, e2e: Mapping[int, E2EResult]) -> bool:
    """Plot end-to-end throughput; False when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    names = [c for c in CONFIGS if any(c.name in r.throughput for r in e2e.values())]
    fig, ax = plt.subplots(figsize=(10, 4.8))
    width = 0.8 / max(1, len(e2e))
    for index, (workers, result) in enumerate(sorted(e2e.items())):
        values = [result.summary(c.name)["cycles_per_s"] for c in names]
        positions = [i + index * width for i in range(len(names))]
        ax.bar(positions, values, width, label=f"{workers} worker{'s' if workers > 1 else ''}")
    ax.set_xticks([i + width * (len(e2e) - 1) / 2 for i in range(len(names))])
    ax.set_xticklabels([c.label for c in names], rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("complete websocket cycles per second (median)")
    ax.set_title("sanic-wsauth end to end: connect / send / receive / close")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
