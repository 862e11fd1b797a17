"""Handshake outcomes as Sanic signals and counters, on a real server."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from sanic import Request, Sanic
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from sanic_wsauth import WSAuth
from sanic_wsauth.ext.signals import TICKET_ACCEPTED, TICKET_REJECTED

from ._support import handshake, serve

LIVENESS = 10.0


def _app(name: str, secret: str, **options: Any) -> tuple[Sanic[Any, Any], WSAuth]:
    app: Sanic[Any, Any] = Sanic(name)
    app.config.WEBSOCKET_PING_INTERVAL = None
    wsauth = WSAuth(app, secret_keys=secret, **options)

    @app.websocket("/ws")
    async def echo(request: Request, ws: Any) -> None:
        async for message in ws:
            await ws.send(message)

    return app, wsauth


async def _take(queue: asyncio.Queue[dict[str, Any]], n: int) -> list[dict[str, Any]]:
    return [await asyncio.wait_for(queue.get(), LIVENESS) for _ in range(n)]


async def test_rejections_and_acceptances_are_dispatched(secret: str, app_name: str) -> None:
    app, wsauth = _app(app_name, secret)
    events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    @app.signal(TICKET_REJECTED)
    async def rejected(**context: Any) -> None:
        await events.put({"event": "rejected", **context})

    @app.signal(TICKET_ACCEPTED)
    async def accepted(**context: Any) -> None:
        await events.put({"event": "accepted", **context})

    async with serve(app) as srv:
        token = wsauth.issue("alice")
        tokens = [token]
        assert (await handshake(f"{srv.ws}/ws?token={token}")).status == 101
        assert (await handshake(f"{srv.ws}/ws?token={token}")).status == 401
        assert (await handshake(f"{srv.ws}/ws")).status == 401
        forged = token[:-4] + "AAAA"
        tokens.append(forged)
        assert (await handshake(f"{srv.ws}/ws?token={forged}")).status == 401
        other = wsauth.issue("bob")
        tokens.append(other)
        refused = await handshake(f"{srv.ws}/ws?token={other}", origin="https://evil.example")
        assert refused.status == 403
        got = await _take(events, 5)

    assert [(e["event"], e.get("reason") or e.get("subject")) for e in got] == [
        ("accepted", "alice"),
        ("rejected", "replayed"),
        ("rejected", "missing"),
        ("rejected", "bad_signature"),
        ("rejected", "origin_forbidden"),
    ]
    for event in got:
        keys = {"event", "request", "reason" if event["event"] == "rejected" else "subject"}
        assert set(event) == keys
        assert isinstance(event["request"], Request)
        assert event["request"].path == "/ws"
        for value in (v for k, v in event.items() if k != "request"):
            assert not any(t in value or value in t for t in tokens if len(value) > 8)
    assert wsauth.counters == {
        "accepted": 1,
        "replayed": 1,
        "missing": 1,
        "bad_signature": 1,
        "origin_forbidden": 1,
    }


async def test_counters_without_listeners_and_no_dispatch(secret: str, app_name: str) -> None:
    app, wsauth = _app(app_name, secret)
    dispatched: list[str] = []
    real_dispatch = app.signal_router.dispatch

    def spy(event: Any, **kwargs: Any) -> Any:
        dispatched.append(str(event))
        return real_dispatch(event, **kwargs)

    app.signal_router.dispatch = spy  # type: ignore[method-assign]
    async with serve(app) as srv:
        token = wsauth.issue("alice")
        for expected in (101, 401, 401):
            assert (await handshake(f"{srv.ws}/ws?token={token}")).status == expected
    assert wsauth.counters == {"accepted": 1, "replayed": 2}
    # Sanic's own signals went through the spy; ours were never dispatched.
    assert "websocket.handler.before" in dispatched
    assert not any(event.startswith("wsauth.") for event in dispatched)


async def test_a_failing_or_slow_listener_does_not_change_the_outcome(
    secret: str, app_name: str
) -> None:
    app, wsauth = _app(app_name, secret)
    release = asyncio.Event()
    calls: list[str] = []

    @app.signal(TICKET_REJECTED)
    async def broken(request: Request, reason: str) -> None:
        calls.append(reason)
        raise RuntimeError("listener bug")

    @app.signal(TICKET_ACCEPTED)
    async def slow(request: Request, subject: str) -> None:
        calls.append(subject)
        await release.wait()

    async with serve(app) as srv:
        ok = await handshake(f"{srv.ws}/ws?token={wsauth.issue('alice')}")
        assert ok.status == 101 and ok.reply == "ping"
        bad = await handshake(f"{srv.ws}/ws?token=garbage")
        assert bad.status == 401 and json.loads(bad.body) == {"error": "malformed"}
        for _ in range(100):
            if len(calls) == 2:
                break
            await asyncio.sleep(0.02)
        release.set()
    assert sorted(calls) == ["alice", "malformed"]


async def test_bad_refresh_is_a_rejection(secret: str, app_name: str) -> None:
    app, wsauth = _app(app_name, secret, max_connection_age=10, refresh=True)
    events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    @app.signal(TICKET_REJECTED)
    async def rejected(request: Request, reason: str) -> None:
        await events.put({"reason": reason, "path": request.path})

    async with serve(app) as srv:
        async with connect(f"{srv.ws}/ws?token={wsauth.issue('alice')}") as ws:
            await ws.send(json.dumps({"type": "wsauth.refresh", "token": wsauth.issue("eve")}))
            try:
                await asyncio.wait_for(ws.recv(), LIVENESS)
            except ConnectionClosed as exc:
                assert exc.rcvd is not None and exc.rcvd.code == 4003
        assert await _take(events, 1) == [{"reason": "subject_mismatch", "path": "/ws"}]
    assert wsauth.counters["subject_mismatch"] == 1
