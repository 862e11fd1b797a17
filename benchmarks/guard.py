"""The handshake guard in process: the whole request middleware, no network.

Real ``sanic.Request`` objects for a real app with sanic-wsauth installed
(memory store), routed as Sanic routes them, go through the guard exactly as
before an upgrade: a ``@public`` route (the baseline: the guard looks at the
route and lets it through), a protected route with a ticket in the query
string, and the same with a browser's ``Origin`` header (the server's own).
Requests are built before the timed batch; the time is the guard's alone.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

from sanic import Request, Sanic
from sanic.compat import Header

from sanic_wsauth import WSAuth
from sanic_wsauth.stores.memory import MemoryReplayStore

from .timing import Batch

__all__ = ["guard_batches"]

HOST = "127.0.0.1:8000"
_names = itertools.count()


def guard_batches(loop: asyncio.AbstractEventLoop, secret: str, subject: str) -> dict[str, Batch]:
    """``guard.public``, ``guard.ticket`` and ``guard.ticket+origin`` batches."""
    app: Sanic[Any, Any] = Sanic(f"wsauth_guard_bench_{next(_names)}")
    wsauth = WSAuth(app, secret_keys=secret)

    async def handler(request: Request, ws: Any) -> None:  # never runs
        return None

    async def public(request: Request, ws: Any) -> None:  # never runs
        return None

    app.add_websocket_route(handler, "/ws")
    app.add_websocket_route(WSAuth.public(public), "/pub")
    app.router.finalize()
    wsauth.configure()
    wsauth._store = MemoryReplayStore()
    guard = wsauth._guard

    def request(path: str, origin: str | None) -> Request:
        headers = {
            "host": HOST,
            "upgrade": "websocket",
            "connection": "Upgrade",
            "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==",
            "sec-websocket-version": "13",
        }
        if origin is not None:
            headers["origin"] = origin
        made = Request(path.encode(), Header(headers), "1.1", "GET", None, app)  # type: ignore[arg-type]
        made.route = app.router.get(path.partition("?")[0], "GET", HOST)[0]
        return made

    def batch(path: str, ticket: bool, origin: str | None) -> Batch:
        async def run(requests: list[Request]) -> float:
            start = loop.time()
            for item in requests:
                if await guard(item) is not None:
                    raise RuntimeError("the guard refused a benchmark handshake")
            return loop.time() - start

        def timed(n: int) -> float:
            wsauth._store = MemoryReplayStore()  # fresh per batch: never near the cap
            requests = [
                request(f"{path}?token={wsauth.issue(subject)}" if ticket else path, origin)
                for _ in range(n)
            ]
            return loop.run_until_complete(run(requests))

        return timed

    return {
        "guard.public": batch("/pub", False, None),
        "guard.ticket": batch("/ws", True, None),
        "guard.ticket+origin": batch("/ws", True, f"http://{HOST}"),
    }
