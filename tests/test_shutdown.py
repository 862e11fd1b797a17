"""A shutdown signal that lands inside one of Sanic's manager calls.

Sanic's main process polls worker states through a ``multiprocessing``
manager proxy many times a second; its SIGTERM/SIGINT handler uses the same
proxy. A signal between a request and its reply made the handler read the
loop's reply and die with a traceback (two CI runs of this project, at random).
Timing a real signal into a window of microseconds is not repeatable, so the
demo below raises the signal itself at that exact point: a fault injected,
everything else (the demo, its two workers, Sanic's shutdown) real.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ._support import free_port, new_secret, wait_for_port, wait_for_workers

pytestmark = pytest.mark.slow

_INJECT = """
import signal, sys, threading
from multiprocessing import connection

armed = threading.Event()
signal.signal(signal.SIGUSR1, lambda *_: armed.set())
recv = connection.Connection.recv

def recv_with_signal(self):
    if (
        armed.is_set()
        and threading.current_thread() is threading.main_thread()
        and sys._getframe(1).f_code.co_name == "_callmethod"
    ):
        armed.clear()
        print("injected: signal inside a manager call", flush=True)
        signal.raise_signal(int(sys.argv[1]))  # its handler runs before the reply is read
    return recv(self)

connection.Connection.recv = recv_with_signal
from sanic_wsauth.cli import main
sys.exit(main(sys.argv[2:]))
"""


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_inside_a_manager_call_shuts_the_demo_down_cleanly(
    signum: signal.Signals, tmp_path: Path
) -> None:
    port = free_port()
    log_path = tmp_path / "demo.log"
    env = {**os.environ, "WSAUTH_SECRET": new_secret(), "WSAUTH_DEMO_API_KEY": "k"}
    cmd = [sys.executable, "-c", _INJECT, str(int(signum)), "demo", "--port", str(port)]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [*cmd, "--workers", "2"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            wait_for_port("127.0.0.1", port, proc=proc)
            wait_for_workers(log_path, 2)  # a worker stopped mid-import is another matter
            proc.send_signal(signal.SIGUSR1)  # the next manager call gets the signal
            code = proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    text = log_path.read_text(errors="replace")
    assert "injected: signal inside a manager call" in text, text
    assert "Traceback" not in text, text[-3000:]
    assert f"Received signal {signum.name}. Shutting down." in text, text
    assert text.count("Worker complete") == 2, text
    assert code == 0, text
    deadline = time.monotonic() + 10
    while _group_alive(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _group_alive(proc.pid), "a worker outlived the main process"
