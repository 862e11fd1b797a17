"""Instructions counted by callgrind: read a dump; run a process whose counting
is switched on and off from outside.

The counts of :mod:`benchmarks.instructions`. A process starts under
``valgrind --tool=callgrind --instr-atstart=no``: it runs uninstrumented (and
counts nothing) until ``callgrind_control -i on``; ``callgrind_control -z``
zeroes its counters and ``-d`` writes them to a dump, which :func:`parse_dump`
reads.
"""

from __future__ import annotations

import json
import os
import re
import select
import signal
import subprocess
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["EVENT", "DumpCost", "Traced", "parse_dump"]

ROOT = Path(__file__).resolve().parent.parent

#: The event counted: instructions read (executed).
EVENT = "Ir"


# -- the callgrind dump ------------------------------------------------------------


@dataclass(frozen=True)
class DumpCost:
    """One callgrind dump: its total and the inclusive cost of excluded functions."""

    total: int
    excluded: int = 0

    @property
    def counted(self) -> int:
        return self.total - self.excluded


_NAME = re.compile(r"^\((\d+)\)(?: (.*))?$")


def _name(value: str, names: dict[str, str]) -> str:
    """Resolve callgrind's name compression: ``(12) name`` defines, ``(12)`` refers."""
    match = _NAME.match(value)
    if match is None:
        return value
    ident, name = match.groups()
    if name is not None:
        names[ident] = name
        return name
    return names.get(ident, "")


def parse_dump(text: str, exclude: Iterable[str] = (), *, event: str = EVENT) -> DumpCost:
    """Read a callgrind dump's total ``event`` count and what ``exclude`` cost.

    The total comes from ``totals:`` (the sum of every cost line), else
    ``summary:``; callgrind 3.19 writes ``summary: 0`` at the top of a dump
    taken with ``callgrind_control -d`` and the real figure in ``totals:``.
    An excluded function's cost is its inclusive cost at every call site: the
    cost line that follows each ``calls=`` line whose ``cfn=`` names it.
    """
    excluded_names = set(exclude)
    events = [event]
    positions = 1
    totals: int | None = None
    summary: int | None = None
    names: dict[str, str] = {}
    callee = ""
    call_cost_next = False
    excluded = 0

    def pick(fields: list[str]) -> int:
        index = events.index(event) if event in events else -1
        if index < 0 or index >= len(fields):
            return 0
        return int(fields[index])

    for line in text.splitlines():
        if call_cost_next and line and (line[0].isdigit() or line[0] in "+-*"):
            call_cost_next = False
            if callee in excluded_names:
                excluded += pick(line.split()[positions:])
            continue
        key, sep, value = line.partition("=")
        if sep and key in ("fn", "cfn"):
            name = _name(value.strip(), names)
            if key == "cfn":
                callee = name
            continue
        if sep and key == "calls":
            call_cost_next = True
            continue
        head, colon, rest = line.partition(":")
        if not colon:
            continue
        if head == "events":
            events = rest.split()
        elif head == "positions":
            positions = len(rest.split())
        elif head == "totals":
            totals = pick(rest.split())
        elif head == "summary":
            summary = pick(rest.split())
    total = totals if totals is not None else summary
    if total is None:
        raise ValueError("not a callgrind dump: no totals: or summary: line")
    return DumpCost(total=total, excluded=excluded)


# -- a process under callgrind -------------------------------------------------------


class Traced:
    """A process under callgrind, counting nothing until :meth:`start_counting`."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        work: Path,
        env: Mapping[str, str] | None = None,
        pipes: bool = False,
    ) -> None:
        self.name = name
        self.work = work
        self.log_path = work / f"{name}.log"
        with open(self.log_path, "wb") as log:
            self.proc: subprocess.Popen[bytes] = subprocess.Popen(
                [
                    "valgrind",
                    "--tool=callgrind",
                    "--instr-atstart=no",
                    f"--callgrind-out-file={work / name}.%p",
                    *argv,
                ],
                cwd=ROOT,
                env=dict(env) if env is not None else None,
                # Its own process group: a signal to ours does not reach it.
                start_new_session=True,
                stdin=subprocess.PIPE if pipes else subprocess.DEVNULL,
                stdout=subprocess.PIPE if pipes else log,
                stderr=log,
            )
        self._buffer = b""

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _control(self, *args: str) -> None:
        subprocess.run(
            ["callgrind_control", *args, str(self.pid)], check=True, capture_output=True, timeout=60
        )

    def start_counting(self) -> None:
        self._control("-z")
        self._control("-i", "on")

    def stop_counting(self) -> None:
        self._control("-i", "off")

    def dump(self, exclude: Iterable[str] = (), timeout: float = 60.0) -> DumpCost:
        """Dump the counters; parse the dump once callgrind has written it whole."""
        self._control("-d")
        deadline = time.monotonic() + timeout
        while True:
            dumps = sorted(
                self.work.glob(f"{self.name}.{self.pid}.*"),
                key=lambda p: int(p.suffix[1:]) if p.suffix[1:].isdigit() else -1,
            )
            if dumps:
                text = dumps[-1].read_text(errors="replace")
                if "\ntotals:" in text:
                    return parse_dump(text, exclude)
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name}: no complete callgrind dump in {timeout} s")
            time.sleep(0.1)

    def log_tail(self, size: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-size:]
        except OSError:
            return ""

    # The client's line protocol: one command line in, one JSON line out.

    def send(self, command: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command.encode() + b"\n")
        self.proc.stdin.flush()

    def receive(self, timeout: float) -> dict[str, Any]:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"{self.name}: no answer in {timeout} s")
            ready, _, _ = select.select([fd], [], [], remaining)
            if ready:
                chunk = os.read(fd, 65536)
                if not chunk:
                    self.proc.wait(timeout=30)
                    raise RuntimeError(
                        f"{self.name} exited with {self.proc.returncode}:\n{self.log_tail()}"
                    )
                self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        reply: dict[str, Any] = json.loads(line)
        if "error" in reply:
            raise RuntimeError(f"{self.name}: {reply['error']}")
        return reply

    def stop(self) -> None:
        """SIGTERM (once), then SIGKILL after 20 s; by PID."""
        if self.proc.poll() is None:
            if self.proc.stdin is not None:
                try:
                    self.proc.stdin.close()  # the client ends at end of input
                except OSError:
                    pass
            else:
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
