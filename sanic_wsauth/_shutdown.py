"""Stop Sanic's multi-worker main process cleanly on SIGTERM or SIGINT.

Two faults of Sanic's ``WorkerManager`` (25.12), both seen in this project:

- Its handler runs in the main thread and writes worker states through the
  ``multiprocessing`` manager proxy that the monitor loop uses many times a
  second, over the same connection. A signal between one of the loop's
  requests and its reply makes the handler read that reply: ``TypeError:
  'list' object is not a mapping``, a traceback, sometimes a hang.
- The manager's server process ignores SIGINT (the standard library does
  that) but not SIGTERM. A SIGTERM to the whole process group, as systemd
  sends by default, kills it too, and the main process then fails on its next
  proxy call (``ConnectionResetError``), although every worker got the
  signal and stops.

:func:`managed_shutdown` wraps ``Sanic.serve``. Once the worker manager
exists, both signals run Sanic's own handler in a new thread: a proxy keeps
one connection per thread, so the handler no longer shares the loop's. One
handler runs at a time, so a second signal still means "kill now". Where
Sanic's handler fails (its manager's server gone), the workers are signalled
directly, and :attr:`Serving.signalled` lets the caller tell that stop from
a failure.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from collections.abc import Iterator
from types import FrameType
from typing import Any

__all__ = ["Serving", "managed_shutdown"]

logger = logging.getLogger("sanic_wsauth")

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Serving:
    """What :func:`managed_shutdown` saw of the run."""

    #: The worker manager was ready: the workers were about to start.
    started = False
    #: A shutdown signal came once the workers were starting.
    signalled = False


@contextlib.contextmanager
def managed_shutdown(app: Any) -> Iterator[Serving]:
    """Run ``Sanic.serve(primary=app, ...)`` inside this block (main process).

    The signal handlers from before the block are back after it.
    """
    serving = Serving()
    previous = {signum: signal.getsignal(signum) for signum in _SIGNALS}

    def install(app: Any) -> None:
        manager = app.manager
        handler = manager.shutdown_signal
        lock = threading.Lock()

        def shut_down(signum: int) -> None:
            with lock:
                try:
                    handler(signum, None)
                except Exception as exc:  # noqa: BLE001 - the signal must not be lost
                    # The manager's server is gone, say (a group SIGTERM).
                    logger.warning(
                        "Sanic's shutdown failed (%s); stopping the workers directly",
                        type(exc).__name__,
                    )
                    # As Sanic's shutdown() would have: a second signal now
                    # kills, and the main loop signals no process again.
                    manager._shutting_down = True
                    for process in list(manager.processes):
                        if process.pid and process.is_alive():
                            with contextlib.suppress(ProcessLookupError):
                                os.kill(process.pid, signal.SIGINT)

        def deferred(signum: int, frame: FrameType | None) -> None:
            serving.signalled = True
            threading.Thread(target=shut_down, args=(signum,), name="wsauth-shutdown").start()

        for signum in _SIGNALS:
            signal.signal(signum, deferred)
        serving.started = True

    app.main_process_ready(install)
    try:
        yield serving
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
