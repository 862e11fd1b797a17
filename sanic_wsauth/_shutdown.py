"""Shut Sanic's multi-worker main process down off the signal handler.

Sanic's ``WorkerManager`` handles SIGINT/SIGTERM in the main thread, and the
handler writes worker states through a ``multiprocessing`` manager proxy. The
main thread uses that same proxy (same connection) in its monitor loop, many
times a second. A signal that lands between a proxy request and its reply
makes the handler read the reply meant for the loop: ``TypeError: 'list'
object is not a mapping``, a traceback, and a main process that dies without
stopping its workers in order (seen in this project's CI, Sanic 25.12).

:func:`defer_shutdown_signals` re-registers both signals, once the manager
exists, with a handler that runs Sanic's own one in a new thread. A proxy keeps
one connection per thread, so the handler's calls no longer interleave with
the loop's. Everything else (the log line, a second signal killing) is Sanic's.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from types import FrameType
from typing import Any

__all__ = ["defer_shutdown_signals"]

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def defer_shutdown_signals(app: Any) -> None:
    """In the main process of ``Sanic.serve``, handle shutdown signals in a thread."""

    def install(app: Any) -> None:
        handler = app.manager.shutdown_signal

        def shut_down(signum: int) -> None:
            # The manager's server is gone only once serve() is ending anyway.
            with contextlib.suppress(OSError, EOFError):
                handler(signum, None)

        def deferred(signum: int, frame: FrameType | None) -> None:
            threading.Thread(target=shut_down, args=(signum,), name="wsauth-shutdown").start()

        for signum in _SIGNALS:
            signal.signal(signum, deferred)

    app.main_process_ready(install)
