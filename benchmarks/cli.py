"""``python -m benchmarks [--quick] [--sections micro,e2e,memory] [--out DIR]``."""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["main"]

DEFAULT_OUT = Path(__file__).resolve().parent / "results"
DEFAULT_REDIS = "redis://127.0.0.1:6379/0"
SECTIONS = ("micro", "e2e", "memory")


def _progress(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _redis_version(url: str | None) -> str | None:
    if not url:
        return None
    try:
        import redis

        client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        try:
            return str(client.info("server")["redis_version"])
        finally:
            client.close()
    except Exception:  # noqa: BLE001 - no Redis: its cases are skipped
        return None


def _int_list(text: str) -> list[int]:
    values = [int(part) for part in text.split(",") if part.strip()]
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("a comma-separated list of positive integers")
    return values


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Benchmark sanic-wsauth against stock itsdangerous, PyJWT and the "
        "seed's cache design; write results.md, results.json and e2e.png.",
    )
    parser.add_argument("--quick", action="store_true", help="tiny counts: a smoke run")
    parser.add_argument(
        "--sections", default=",".join(SECTIONS), help="comma-separated: micro,e2e,memory"
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results directory")
    parser.add_argument("--micro-rounds", type=int, default=None)
    parser.add_argument("--e2e-rounds", type=int, default=None)
    parser.add_argument("--workers", type=_int_list, default=None, help="e.g. 1,2")
    parser.add_argument("--cycles", type=int, default=None, help="per client process per round")
    parser.add_argument("--clients", type=int, default=2, help="client processes")
    parser.add_argument("--concurrency", type=int, default=4, help="connections per client")
    parser.add_argument(
        "--sanic-timeout",
        type=float,
        default=None,
        help="set the servers' REQUEST/RESPONSE/KEEP_ALIVE timeouts (default: Sanic's)",
    )
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("WSAUTH_BENCH_REDIS_URL", DEFAULT_REDIS),
        help="Redis for the Redis cases ('' to skip them)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        print(f"unknown section(s): {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2

    from .e2e import E2EResult, run_e2e
    from .memory import run_memory
    from .micro import MicroResult, run_micro
    from .report import (
        evaluate_controls,
        evaluate_targets,
        machine_info,
        mark_resolution,
        write_chart,
        write_json,
        write_markdown,
    )
    from .steadiness import probe

    quick = args.quick
    redis_version = _redis_version(args.redis_url)
    redis_url = args.redis_url if redis_version else None
    secret = secrets.token_urlsafe(48)
    prefix = f"wsauth-bench:{os.getpid()}:{secrets.token_hex(4)}:"
    settings: dict[str, Any] = {
        "quick": quick,
        "micro_rounds": args.micro_rounds or (2 if quick else 15),
        "e2e_rounds": args.e2e_rounds or (1 if quick else 10),
        "workers": args.workers or ([1] if quick else [1, 2]),
        "cycles_per_client": args.cycles or (10 if quick else 600),
        "clients": args.clients,
        "concurrency": args.concurrency,
        "sanic_timeout": args.sanic_timeout,
    }
    notes: list[str] = []
    if redis_url is None:
        notes.append(f"Redis at {args.redis_url or '(none)'} unavailable: Redis cases skipped")

    started = time.monotonic()
    slices = 20 if quick else 200
    _progress("steadiness: a fixed loop, timed back to back")
    steadiness = {"before": probe(slices)}
    micro: MicroResult | None = None
    e2e: dict[int, E2EResult] | None = None
    memory: dict[str, Any] | None = None
    if "micro" in sections:
        _progress("micro: per-operation costs")
        micro = run_micro(
            quick=quick,
            rounds=settings["micro_rounds"],
            redis_url=redis_url,
            prefix=prefix,
            secret=secret,
        )
        notes += micro.notes
    if "memory" in sections:
        _progress("memory: bytes per entry and RSS under churn (subprocess)")
        memory = run_memory(quick=quick)
    if "e2e" in sections:
        _progress("e2e: real servers, client processes")
        e2e, e2e_notes = run_e2e(
            quick=quick,
            rounds=settings["e2e_rounds"],
            workers=settings["workers"],
            redis_url=redis_url,
            prefix=prefix,
            secret=secret,
            clients=args.clients,
            concurrency=args.concurrency,
            cycles=settings["cycles_per_client"],
            progress=_progress,
            sanic_timeout=args.sanic_timeout,
        )
        notes += e2e_notes
    steadiness["after"] = probe(slices)
    elapsed = time.monotonic() - started

    machine = machine_info(redis_version)
    targets = evaluate_targets(micro, e2e, memory)
    controls = evaluate_controls(e2e)
    mark_resolution(targets, controls)
    command = "python -m benchmarks" + (" " + " ".join(argv) if argv else "")
    if argv is None and len(sys.argv) > 1:
        command = "python -m benchmarks " + " ".join(sys.argv[1:])
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    data: dict[str, Any] = {
        "machine": machine,
        "settings": settings,
        "elapsed_s": elapsed,
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": command,
        "targets": targets,
        "controls": controls,
        "steadiness": steadiness,
        "micro": micro.to_json() if micro is not None else None,
        "e2e": {str(w): {name: r.summary(name) for name in r.throughput} for w, r in e2e.items()}
        if e2e is not None
        else None,
        "memory": memory,
        "notes": notes,
    }
    write_json(out / "results.json", data)
    write_markdown(
        out / "results.md",
        machine=machine,
        settings=settings,
        micro=micro,
        e2e=e2e,
        memory=memory,
        targets=targets,
        notes=notes,
        command=command,
        controls=controls,
        steadiness=steadiness,
    )
    if e2e and write_chart(out / "e2e.png", e2e):
        _progress(f"chart: {out / 'e2e.png'}")
    _progress(f"done in {elapsed:.0f} s: {out / 'results.md'}")
    for target in targets:
        interval = ""
        if "interval" in target:
            low, high = target["interval"]
            interval = f" [{low:.3g}, {high:.3g}]"
            if not target["conclusive"]:
                interval += " inconclusive"
            if target.get("within_control_resolution"):
                interval += ", within the A/A control's spread"
        print(
            f"{'MET    ' if target['met'] else 'NOT MET'}  {target['target']}: "
            f"{target['measured']:.3g}{interval} ({target['goal']})",
        )
    for control in controls:
        low, high = control["interval"]
        print(
            f"A/A      two no-auth servers ({control['workers']} worker"
            f"{'s' if control['workers'] > 1 else ''}): {control['ratio']:.3g} "
            f"[{low:.3g}, {high:.3g}] (identical: 1)"
        )
    for when, s in steadiness.items():
        print(
            f"steady   {when}: the same work took {s['min_ms']:.1f}-{s['max_ms']:.1f} ms "
            f"(slowest / fastest {s['slowest_over_fastest']:.2f})"
        )
    return 0
