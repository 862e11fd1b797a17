"""The demo's 2-worker main process on SIGTERM and SIGINT (``sanic_wsauth/_shutdown.py``).

Sanic's main process polls worker states through a ``multiprocessing``
manager proxy many times a second; its SIGTERM/SIGINT handler used the same
proxy connection. A signal between a request and its reply made the handler
read the loop's reply and die with a traceback (two CI runs of this project,
at random). Timing a real signal into a window of microseconds is not
repeatable, so the first test has the demo raise the signal itself at that
exact point, and two others refuse the shutdown thread its manager
connection: faults injected, everything else (the demo, its two workers,
Sanic's shutdown) real. The signals are real, sent from outside.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ._support import run_demo, wait_for_workers

pytestmark = pytest.mark.slow

_INJECT = """
import signal, sys, threading
from multiprocessing import connection, managers

fault = sys.argv[1]
armed = threading.Event()
signal.signal(signal.SIGUSR1, lambda *_: armed.set())
recv = connection.Connection.recv
connect = managers.BaseProxy._connect

def recv_with_signal(self):
    if (
        fault.startswith("SIG")
        and armed.is_set()
        and threading.current_thread() is threading.main_thread()
        and sys._getframe(1).f_code.co_name == "_callmethod"
    ):
        armed.clear()
        print("injected: signal inside a manager call", flush=True)
        signal.raise_signal(getattr(signal, fault))  # its handler runs before the reply is read
    return recv(self)

def connect_refused(self):
    if fault == "refused" and threading.current_thread().name == "wsauth-shutdown":
        raise ConnectionRefusedError("injected: the manager's server is gone")
    return connect(self)

connection.Connection.recv = recv_with_signal
managers.BaseProxy._connect = connect_refused
from sanic_wsauth.cli import main
sys.exit(main(sys.argv[2:]))
"""


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


@contextlib.contextmanager
def _demo(log_path: Path, *launcher: str) -> Iterator[subprocess.Popen[bytes]]:
    """A 2-worker demo, ready; the test stops it, and its whole group must be gone."""
    proc = None
    try:
        with run_demo(workers=2, log_path=str(log_path), launcher=launcher) as (proc, _):
            wait_for_workers(log_path, 2)  # a worker stopped mid-import is another matter
            yield proc
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=30)
        deadline = time.monotonic() + 10
        while _group_alive(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _group_alive(proc.pid), "a process outlived the demo's main process"
    finally:
        if proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)


def _assert_clean_stop(log_path: Path, proc: subprocess.Popen[bytes]) -> str:
    text = log_path.read_text(errors="replace")
    assert "Traceback" not in text, text[-3000:]
    assert text.count("Worker complete") == 2, text
    assert "error:" not in text, text  # the CLI's own error line
    assert proc.returncode == 0, text
    return text


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_inside_a_manager_call_shuts_the_demo_down_cleanly(
    signum: signal.Signals, tmp_path: Path
) -> None:
    log_path = tmp_path / "demo.log"
    with _demo(log_path, "-c", _INJECT, signum.name) as proc:
        proc.send_signal(signal.SIGUSR1)  # the next manager call gets the signal
    text = _assert_clean_stop(log_path, proc)
    assert "injected: signal inside a manager call" in text, text
    assert f"Received signal {signum.name}. Shutting down." in text, text


def test_sigterm_to_the_whole_process_group_stops_the_demo_with_0(tmp_path: Path) -> None:
    """As systemd stops a service: every process gets SIGTERM, Sanic's manager
    server included, which dies. Before, the demo then exited 1 with "cannot
    listen on ...: Connection reset by peer". Whether the main process finds
    the manager gone is a race: up to three runs, until one does."""
    for attempt in range(3):
        log_path = tmp_path / f"demo-{attempt}.log"
        with _demo(log_path, "-m", "sanic_wsauth") as proc:
            os.killpg(proc.pid, signal.SIGTERM)
        text = _assert_clean_stop(log_path, proc)
        if "Experienced exception while trying to serve" in text:
            return  # Sanic's main loop met the dead manager, and the demo still exited 0
    pytest.fail("in three runs, the main process never met the manager's server gone")


def test_where_sanics_handler_fails_the_workers_are_stopped_directly(tmp_path: Path) -> None:
    log_path = tmp_path / "demo.log"
    with _demo(log_path, "-c", _INJECT, "refused") as proc:
        proc.send_signal(signal.SIGTERM)
    text = _assert_clean_stop(log_path, proc)
    assert "Sanic's shutdown failed (ConnectionRefusedError)" in text, text


@pytest.mark.parametrize("fault", ["none", "refused"])
def test_a_second_signal_during_shutdown_still_kills(fault: str, tmp_path: Path) -> None:
    """Sanic's rule: a second signal while shutting down kills the workers at
    once; also where its handler failed and the workers were signalled directly."""
    log_path = tmp_path / "demo.log"
    with _demo(log_path, "-c", _INJECT, fault) as proc:
        proc.send_signal(signal.SIGTERM)
        proc.send_signal(signal.SIGINT)
    text = log_path.read_text(errors="replace")
    assert text.count("Shutting down.") == 1, text
    assert "Shutdown interrupted. Killing." in text, text
    assert "Traceback" not in text, text[-3000:]
    assert ("Sanic's shutdown failed" in text) == (fault == "refused"), text
