"""Instructions per websocket cycle, counted by callgrind: a deterministic benchmark.

``python -m benchmarks.instructions [--cycles N] [--warmup W] [--out DIR]
[--variants public,public-b,memory,memory-py,redis,seed] [--quick] [--keep-dumps]``

Wall-clock throughput on a small shared machine strays by several percent from
run to run; the user-space instructions a process executes for the same work
do not (callgrind counts them repeatably to about 0.1 %). So each server
variant of :mod:`benchmarks.server` runs under ``valgrind --tool=callgrind``
with instrumentation off, and so do the client process and, for the Redis
variants, a ``redis-server`` of its own. After ``W`` uninstrumented warm-up
cycles (imports, pools, caches) and with ``N`` tickets already issued, the
counters are zeroed and switched on in every process (``callgrind_control``),
the client runs ``N`` cycles one after another, and the counters are switched
off and dumped. Instructions per cycle is each dump's total over ``N``.

A cycle is exactly :mod:`benchmarks.load`'s handshake mode (its ``_prepare``
and ``_run``, concurrency 1): connect (the handshake), send ``ping``, receive
the echo, close; tickets issued before the window (ours for memory/redis, the
seed's ``SET ... EX`` in Redis for seed, none for public). ``public-b`` is a
second, identical no-auth server: the A/A control; its ratio to ``public``
shows how repeatable the counts are. ``memory-py`` is ``memory`` with the C
accelerator switched off (``SANIC_WSAUTH_NO_EXTENSIONS=1``): the pure-Python
verify, as on a machine where the extension was not built.

Three things would make the counts depend on timing rather than on the work,
so they are removed on purpose, in every variant alike:

- websockets' "connection closed" INFO record: whether the server writes it
  depends on a race at close (see :func:`_server_main`); the server runs with
  ``logging.disable(INFO)``, so its counts leave out that record.
- Sanic's per-connection timeout check (it releases a closed connection's
  objects min(timeouts) / 2 after it opened, 30 s by default, so inside or
  outside the window depending on how long the run takes): one-hour timeouts
  push it past the run.
- ``redis-server``'s ``serverCron`` (about 1.2 M instructions a second at the
  default ``hz 10``, mostly memory statistics, whether or not commands
  arrive): it runs at ``hz 1`` and its inclusive cost is subtracted from the
  Redis count (the JSON reports it on its own).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from .callgrind import DumpCost, Traced

__all__ = [
    "DEFAULT_VARIANTS",
    "Measurement",
    "main",
    "measure",
    "ratio",
    "render_markdown",
    "summarize",
]

DEFAULT_OUT = Path(__file__).resolve().parent / "results"
DEFAULT_VARIANTS = ("public", "public-b", "memory", "memory-py", "redis", "seed")
#: Variants that run another's server with the C accelerator switched off.
PURE_PYTHON = {"memory-py": "memory"}
QUICK_VARIANTS = ("public", "memory")
BASELINE = "public"
CONTROL = "public-b"
#: Sanic's request/response/keep-alive timeouts (s): no timeout check fires in a run.
SANIC_TIMEOUT = 3600
#: redis-server's cron frequency: the lowest, as its cost is subtracted anyway.
REDIS_HZ = 1
#: Functions whose inclusive cost is taken out of redis-server's count.
REDIS_EXCLUDED = ("serverCron",)


# -- the arithmetic and the report -------------------------------------------------


@dataclass(frozen=True)
class Measurement:
    """One variant's counts over its measured window of ``cycles`` cycles."""

    name: str
    label: str
    cycles: int
    server: int
    client: int
    redis: DumpCost | None = None

    def per_cycle(self) -> dict[str, float | None]:
        """Instructions per cycle: server, client, redis-server (or None), total."""
        n = self.cycles
        server, client = self.server / n, self.client / n
        redis = self.redis.counted / n if self.redis is not None else None
        return {
            "server": server,
            "client": client,
            "redis": redis,
            "total": server + client + (redis or 0.0),
        }


def ratio(base: float | None, value: float | None) -> float:
    """``base / value``; NaN when either is missing or ``value`` is not positive."""
    if base is None or value is None or value <= 0:
        return math.nan
    return base / value


def summarize(
    measurements: Sequence[Measurement], *, baseline: str = BASELINE, control: str = CONTROL
) -> dict[str, Any]:
    """Per variant: counts, per-cycle figures and ``baseline / variant`` ratios.

    Ratios below 1 mean the variant executes more instructions per cycle than
    the no-auth baseline; ``aa`` is ``baseline / control`` (identical: 1).
    """
    rows = {m.name: m.per_cycle() for m in measurements}
    base = rows.get(baseline)
    variants: dict[str, Any] = {}
    for m in measurements:
        row = rows[m.name]
        variants[m.name] = {
            "label": m.label,
            "cycles": m.cycles,
            "server_ir": m.server,
            "client_ir": m.client,
            "redis_ir": m.redis.counted if m.redis is not None else None,
            "redis_cron_ir": m.redis.excluded if m.redis is not None else None,
            "per_cycle": row,
            "ratios": {
                "server": ratio(base["server"], row["server"]) if base else math.nan,
                "total": ratio(base["total"], row["total"]) if base else math.nan,
            },
        }
    aa: dict[str, float] | None = None
    if base is not None and control in rows:
        aa = {
            "server": ratio(base["server"], rows[control]["server"]),
            "client": ratio(base["client"], rows[control]["client"]),
            "total": ratio(base["total"], rows[control]["total"]),
        }
    return {"baseline": baseline, "control": control, "variants": variants, "aa": aa}


def _count(value: float | None) -> str:
    return "–" if value is None else f"{value:,.0f}"


def _ratio(value: float) -> str:
    return "–" if math.isnan(value) else f"{value:.4f}"


def render_markdown(summary: Mapping[str, Any], meta: Mapping[str, Any]) -> str:
    """The table (instructions per cycle and ratios) and how it was measured."""
    base = summary["baseline"]
    lines = [
        "# Instructions per websocket cycle (callgrind)",
        "",
        "One cycle: connect (the handshake), send `ping`, receive the echo, close; "
        f"{meta['cycles']} cycles one after another, after {meta['warmup']} uninstrumented "
        "warm-up cycles, tickets issued before the window. User-space instructions (Ir) "
        "per cycle, counted by callgrind in each process.",
        "",
        f"| configuration | server | client | redis-server | total | {base} / variant, "
        f"server | {base} / variant, total |",
        "|---|--:|--:|--:|--:|--:|--:|",
    ]
    for name, row in summary["variants"].items():
        per = row["per_cycle"]
        lines.append(
            f"| {name} — {row['label']} | {_count(per['server'])} | {_count(per['client'])} "
            f"| {_count(per['redis'])} | {_count(per['total'])} "
            f"| {_ratio(row['ratios']['server'])} | {_ratio(row['ratios']['total'])} |"
        )
    lines.append("")
    aa = summary.get("aa")
    if aa:
        lines.append(
            f"A/A control ({base} / {summary['control']}, two identical no-auth servers; "
            f"identical: 1): server {_ratio(aa['server'])}, client {_ratio(aa['client'])}, "
            f"total {_ratio(aa['total'])}."
        )
        lines.append("")
    if "c_accelerator_variants" in meta:
        if meta["machine"].get("c_accelerator"):
            without = ", memory-py's without it" if "memory-py" in meta["variants"] else ""
            used = ", ".join(meta["c_accelerator_variants"])
            note = f"built; the servers of {used} ran with it{without}."
        else:
            note = "not built: every server ran pure Python (memory and memory-py alike)."
        lines += [f"C accelerator: {note}", ""]
    lines += [
        f"Measured with {meta['valgrind']}, Python {meta['python']}"
        + (f", redis-server {meta['redis_server']}" if meta.get("redis_server") else "")
        + f"; {meta['cycles']} cycles, {meta['warmup']} warm-up; "
        f"{meta['elapsed_s']:.0f} s in all.",
        "",
        "Left out on purpose, as they depend on timing rather than on the work: the "
        "server's INFO log records (websockets' \"connection closed\", written or not "
        f"depending on a race at close); Sanic's timeouts are {SANIC_TIMEOUT} s, so no "
        "per-connection timeout check (which releases a closed connection) fires during a "
        f"run; redis-server runs at `hz {REDIS_HZ}` and the inclusive cost of `serverCron` "
        "(time-driven, not per command) is left out of its column.",
        "",
        f"Command: `{meta['command']}`",
        "",
    ]
    return "\n".join(lines)


def _wait_pong(port: int, proc: subprocess.Popen[bytes], timeout: float) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"redis-server exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                if sock.recv(64).startswith(b"+PONG"):
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"redis-server on port {port} not ready in {timeout}s")


def measure(
    name: str,
    *,
    cycles: int,
    warmup: int,
    work: Path,
    secret: str,
    progress: Any = None,
) -> Measurement:
    """Count one variant: its own server, client and (if it needs one) redis-server."""
    from .e2e import CONFIGS, _free_port, _wait_ready
    from .server import (
        API_KEY_ENV,
        PREFIX_ENV,
        REDIS_ENV,
        SECRET_ENV,
        TIMEOUT_ENV,
        VARIANT_ENV,
    )

    base = PURE_PYTHON.get(name, name)
    (config,) = [c for c in CONFIGS if c.name == base and c.mode == "handshake"]
    label = config.label + (", pure Python (no C accelerator)" if name in PURE_PYTHON else "")
    prefix = f"wsauth-instr:{secrets.token_hex(4)}:"
    env = {
        **os.environ,
        "PYTHONHASHSEED": "0",
        SECRET_ENV: secret,
        API_KEY_ENV: "bench-" + secret[:16],
        PREFIX_ENV: prefix,
        TIMEOUT_ENV: str(SANIC_TIMEOUT),
        VARIANT_ENV: config.server,
    }
    env.pop("SANIC_WSAUTH_NO_EXTENSIONS", None)
    started: list[Traced] = []
    try:
        redis: Traced | None = None
        redis_url = ""
        if config.needs_redis:
            redis_port = _free_port()
            redis = Traced(
                f"{name}-redis",
                [
                    "redis-server",
                    "--port", str(redis_port),
                    "--bind", "127.0.0.1",
                    "--save", "",
                    "--appendonly", "no",
                    "--hz", str(REDIS_HZ),
                    "--dir", str(work),
                ],
                work=work,
            )  # fmt: skip
            started.append(redis)
            _wait_pong(redis_port, redis.proc, 60)
            redis_url = f"redis://127.0.0.1:{redis_port}/0"
            env[REDIS_ENV] = redis_url
        port = _free_port()
        # The flag for the server alone: the client runs the same code in every variant.
        server_env = {**env, "SANIC_WSAUTH_NO_EXTENSIONS": "1"} if name in PURE_PYTHON else env
        server = Traced(
            f"{name}-sanic",
            [
                sys.executable,
                "-m",
                "benchmarks.instructions",
                "--server-child",
                "--port",
                str(port),
                "--single-process",
            ],
            work=work,
            env=server_env,
        )
        started.append(server)
        client = Traced(
            f"{name}-client",
            [
                sys.executable, "-m", "benchmarks.instructions", "--client-child",
                "--port", str(port),
                "--tickets", config.tickets,
                "--redis-url", redis_url,
                "--prefix", prefix,
            ],
            work=work,
            env=env,
            pipes=True,
        )  # fmt: skip
        started.append(client)
        try:
            _wait_ready(port, server.proc, 180)
        except (RuntimeError, TimeoutError) as exc:
            raise RuntimeError(f"{exc}\n{server.log_tail()}") from exc
        client.receive(180)  # ready: imports done
        if progress is not None:
            progress(f"{name}: {warmup} warm-up cycles")
        _cycles(client, warmup)
        client.send(f"prepare {cycles}")
        client.receive(120)
        if progress is not None:
            progress(f"{name}: {cycles} counted cycles")
        traced = [p for p in (redis, server, client) if p is not None]
        for proc in traced:
            proc.start_counting()
        client.send("run")
        done = client.receive(120 + 2 * cycles)
        for proc in reversed(traced):
            proc.stop_counting()
        if done["errors"] or done["done"] != cycles:
            raise RuntimeError(f"{name}: {done['errors']} failed cycles: {done['samples']}")
        return Measurement(
            name=name,
            label=label,
            cycles=cycles,
            server=server.dump().total,
            client=client.dump().total,
            redis=redis.dump(REDIS_EXCLUDED) if redis is not None else None,
        )
    finally:
        for proc in reversed(started):
            proc.stop()


def _accelerator_built() -> bool:
    """Whether ``sanic_wsauth._speedups`` is importable (built), switch or not."""
    import importlib.util

    return importlib.util.find_spec("sanic_wsauth._speedups") is not None


def _cycles(client: Traced, n: int) -> None:
    """Run ``n`` uncounted cycles (tickets prepared first, as for the counted ones)."""
    if n <= 0:
        return
    client.send(f"prepare {n}")
    client.receive(120)
    client.send("run")
    done = client.receive(120 + 2 * n)
    if done["errors"] or done["done"] != n:
        raise RuntimeError(f"warm-up: {done['errors']} failed cycles: {done['samples']}")


# -- the client process ------------------------------------------------------------


def _reply(message: Mapping[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def _client_main(argv: Sequence[str]) -> int:
    """The client, under callgrind: ``prepare N`` issues tickets, ``run`` spends them.

    One event loop for the process (uvloop when importable, as in
    :mod:`benchmarks.load`); cycles one after another (concurrency 1), so the
    same work happens in the same order every time.
    """
    import websockets.asyncio.client  # noqa: F401 - imported before the window

    from .load import Job, _prepare, _run, client_loop
    from .server import API_KEY_ENV, SECRET_ENV

    parser = argparse.ArgumentParser(prog="python -m benchmarks.instructions --client-child")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--tickets", choices=("ours", "seed", "none"), required=True)
    parser.add_argument("--redis-url", default="")
    parser.add_argument("--prefix", default="")
    args = parser.parse_args(argv)

    loop = client_loop()
    job = Job(
        mode="handshake",
        tickets=args.tickets,
        port=args.port,
        cycles=0,
        concurrency=1,
        secret=os.environ[SECRET_ENV],
        api_key=os.environ[API_KEY_ENV],
        redis_url=args.redis_url or None,
        prefix=args.prefix,
    )
    tickets: list[str | None] = []
    _reply({"ready": True})
    try:
        while True:
            line = sys.stdin.readline()
            if not line:
                break
            command, *rest = line.split()
            try:
                if command == "prepare":
                    job = replace(job, cycles=int(rest[0]))
                    tickets = _prepare(job)
                    _reply({"prepared": len(tickets)})
                elif command == "run":
                    latencies, errors, samples = loop.run_until_complete(_run(job, tickets))
                    tickets = []
                    _reply({"done": len(latencies), "errors": errors, "samples": samples})
                else:
                    _reply({"error": f"unknown command {command!r}"})
            except Exception as exc:  # noqa: BLE001 - reported to the parent
                _reply({"error": f"{type(exc).__name__}: {exc}"})
    finally:
        loop.close()
    return 0


def _server_main(argv: Sequence[str]) -> int:
    """The benchmark server (:mod:`benchmarks.serve`), with INFO records disabled.

    When a cycle closes, the client's FIN and the server's own close of the
    TCP connection race; when the FIN wins, websockets logs "connection
    closed" at INFO (about 120,000 instructions with Sanic's formatter), and
    it wins in 60 to 95 % of cycles, differently from run to run. With the
    record on, two identical servers differed by up to 1.5 %; with it off
    (``logging.disable(INFO)``, which Sanic's logging setup leaves alone), by
    0.02 %. Warnings and errors are still written.
    """
    import logging

    logging.disable(logging.INFO)
    from .serve import main as serve

    return serve(argv)


# -- the command -------------------------------------------------------------------


def _progress(message: str) -> None:
    print(f"[instructions {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _tool_version(argv: Sequence[str]) -> str:
    try:
        out = subprocess.run(list(argv), capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return "unavailable"
    return out.strip().splitlines()[0] if out.strip() else "unavailable"


def _redis_version() -> str | None:
    text = _tool_version(["redis-server", "--version"])
    match = re.search(r"v=(\S+)", text)
    return match.group(1) if match else None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.instructions",
        description="Count, with callgrind, the instructions the server, the client and "
        "redis-server execute per websocket cycle; write instructions.json and .md.",
    )
    parser.add_argument("--cycles", type=int, default=None, help="counted cycles (300)")
    parser.add_argument("--warmup", type=int, default=None, help="uncounted cycles first (50)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results directory")
    parser.add_argument(
        "--variants",
        default=None,
        help=f"comma-separated, of {','.join(DEFAULT_VARIANTS)} (default: all)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="tiny counts (20 cycles, 5 warm-up; public,memory)"
    )
    parser.add_argument(
        "--keep-dumps",
        action="store_true",
        help="keep the callgrind dumps and logs in OUT/callgrind (for callgrind_annotate)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["--client-child"]:
        return _client_main(arguments[1:])
    if arguments[:1] == ["--server-child"]:
        return _server_main(arguments[1:])
    args = build_parser().parse_args(arguments)
    cycles: int = args.cycles or (20 if args.quick else 300)
    warmup: int = args.warmup if args.warmup is not None else (5 if args.quick else 50)
    if args.variants is not None:
        variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    else:
        variants = list(QUICK_VARIANTS if args.quick else DEFAULT_VARIANTS)
    unknown = set(variants) - set(DEFAULT_VARIANTS)
    if unknown or not variants or cycles < 1 or warmup < 0:
        print(
            f"--variants takes {','.join(DEFAULT_VARIANTS)}; --cycles >= 1, --warmup >= 0",
            file=sys.stderr,
        )
        return 2
    for tool in ("valgrind", "callgrind_control"):
        if shutil.which(tool) is None:
            print(f"{tool} is not on PATH (apt-get install valgrind)", file=sys.stderr)
            return 2
    if {"redis", "seed"} & set(variants) and shutil.which("redis-server") is None:
        print("redis-server is not on PATH (the redis and seed variants)", file=sys.stderr)
        return 2

    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    if args.keep_dumps:
        work = out / "callgrind"
        work.mkdir(exist_ok=True)
    else:
        work = Path(tempfile.mkdtemp(prefix="wsauth-callgrind-"))
    secret = secrets.token_urlsafe(48)
    started = time.monotonic()
    measurements: list[Measurement] = []
    try:
        for name in variants:
            _progress(f"{name}: starting under callgrind")
            measurements.append(
                measure(
                    name,
                    cycles=cycles,
                    warmup=warmup,
                    work=work,
                    secret=secret,
                    progress=_progress,
                )
            )
    except BaseException:
        _progress(f"failed; callgrind logs and dumps kept in {work}")
        raise
    if not args.keep_dumps:
        shutil.rmtree(work, ignore_errors=True)
    elapsed = time.monotonic() - started

    from .report import machine_info

    command = "python -m benchmarks.instructions" + (" " + " ".join(arguments) if arguments else "")
    redis_server = _redis_version() if any(m.redis for m in measurements) else None
    meta: dict[str, Any] = {
        "command": command,
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "elapsed_s": elapsed,
        "cycles": cycles,
        "warmup": warmup,
        "variants": variants,
        "valgrind": _tool_version(["valgrind", "--version"]),
        "python": sys.version.split()[0],
        "redis_server": redis_server,
        "sanic_timeout_s": SANIC_TIMEOUT,
        "redis_hz": REDIS_HZ,
        "redis_excluded": list(REDIS_EXCLUDED),
        "machine": machine_info(redis_server),
    }
    # The servers, not this process, decide: each runs with the accelerator
    # where it is built, but memory-py's, whatever this process's environment.
    built = _accelerator_built()
    meta["machine"]["c_accelerator"] = built
    meta["c_accelerator_variants"] = [v for v in variants if built and v not in PURE_PYTHON]
    summary = summarize(measurements)
    markdown = render_markdown(summary, meta)
    (out / "instructions.json").write_text(
        json.dumps(_finite({**meta, **summary}), indent=2, allow_nan=False) + "\n"
    )
    (out / "instructions.md").write_text(markdown)
    print(markdown)
    _progress(f"done in {elapsed:.0f} s: {out / 'instructions.md'}")
    return 0


def _finite(value: Any) -> Any:
    """NaN (a ratio without a baseline) as JSON null."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, Mapping):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value


if __name__ == "__main__":
    sys.exit(main())
