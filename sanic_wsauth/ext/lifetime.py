"""Connection age: close authenticated sockets at a cap, or extend them in-band.

Protocol (shared with the browser client, ``static/wsauth.js``):

- ``WSAUTH_MAX_CONNECTION_AGE`` seconds after the handshake (0 = off), the
  server closes the socket with code **4001**, reason ``"connection_age"``;
  the client reconnects with a fresh ticket.
- With ``WSAUTH_REFRESH`` on, the client may send, before the cap, one text
  frame ``{"type": "wsauth.refresh", "token": "<fresh ticket>"}``. The server
  verifies it like a handshake ticket (signature, age, route audience, bound
  IP, replay claim) and requires the connection's subject. On success the
  deadline becomes now + max age and the server answers
  ``{"type": "wsauth.refreshed", "expires_in": <seconds>}``; the frame never
  reaches the app's handler. A bad refresh closes with code **4003** and the
  error's reason (``"replayed"``, ``"subject_mismatch"``, ``"expired"``, ...).

Refresh frames are taken at the frame level, before Sanic's message
assembler, in arrival order: the handler never sees them, and a refresh is
handled whether or not the handler is reading (unless an earlier message
still waits for it). The cap closes the socket even while the handler waits
in ``recv()`` (the close handshake cancels that ``recv()``) or never reads.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import TYPE_CHECKING, Any

from sanic import Request
from sanic.server.websockets.impl import WebsocketImplProtocol
from websockets.frames import Frame, Opcode
from websockets.protocol import State

from ..exceptions import WSAuthError
from ..tokens import Ticket
from . import asgi
from .policy import policy_for

if TYPE_CHECKING:
    from .extension import WSAuth

__all__ = [
    "AGE_CLOSE_CODE",
    "AGE_CLOSE_REASON",
    "ASGI_CLOSE_TIMEOUT",
    "REFRESHED_TYPE",
    "REFRESH_CLOSE_CODE",
    "REFRESH_TYPE",
    "AsgiLifetime",
    "ConnectionLifetime",
    "LifetimeManager",
    "parse_refresh",
]

logger = logging.getLogger("sanic_wsauth")

#: Seconds an ASGI close frame may wait for the server to send it (Sanic's own
#: close timeout): a client that does not read would hold it for good.
ASGI_CLOSE_TIMEOUT = 10.0
#: Close code sent when a connection reaches its maximum age.
AGE_CLOSE_CODE = 4001
#: Close reason sent with :data:`AGE_CLOSE_CODE`.
AGE_CLOSE_REASON = "connection_age"
#: Close code sent when an in-band refresh fails; the reason is the error's.
REFRESH_CLOSE_CODE = 4003
#: ``type`` of the client's refresh frame.
REFRESH_TYPE = "wsauth.refresh"
#: ``type`` of the server's answer to a good refresh.
REFRESHED_TYPE = "wsauth.refreshed"

_MARKER = REFRESH_TYPE.encode()


class _NotRefresh:
    __slots__ = ()


NOT_REFRESH: Any = _NotRefresh()


def parse_refresh(data: bytes | bytearray | memoryview | str) -> Any:
    """Return the ``token`` of a refresh message, or :data:`NOT_REFRESH`.

    A refresh message is a JSON object whose ``type`` is ``"wsauth.refresh"``;
    anything else (other JSON, invalid JSON, binary junk) is an application
    message. The token is returned as sent (any JSON value): the verifier
    refuses what is not a ticket.
    """
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else bytes(data)
    if _MARKER not in raw:
        return NOT_REFRESH
    try:
        message = json.loads(raw)
    except (ValueError, RecursionError):
        return NOT_REFRESH
    if message.__class__ is not dict or message.get("type") != REFRESH_TYPE:
        return NOT_REFRESH
    return message.get("token")


def _expires_in(seconds: float) -> float | int:
    return int(seconds) if float(seconds).is_integer() else seconds


class _FrameFilter:
    """Stands in for Sanic's frame assembler: takes refresh frames out, and
    drops every data frame once the socket is being closed for its age or a
    refused refresh (a client that ignores the close frame reaches the
    handler no more)."""

    __slots__ = ("_inner", "_lifetime", "_refresh")

    def __init__(self, inner: Any, lifetime: ConnectionLifetime, refresh: bool) -> None:
        self._inner = inner
        self._lifetime = lifetime
        self._refresh = refresh

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def put(self, frame: Frame) -> None:
        if self._lifetime._closing:
            return
        # A refresh is one unfragmented text frame; anything else (binary,
        # fragments, continuations) is the application's.
        if self._refresh and frame.opcode is Opcode.TEXT and frame.fin:
            token = parse_refresh(frame.data)
            if token is not NOT_REFRESH:
                await self._lifetime.refresh(token)
                return
        await self._inner.put(frame)


class ConnectionLifetime:
    """The age cap and refresh handling of one authenticated socket.

    This class serves Sanic's own server; :class:`AsgiLifetime` serves ASGI.

    Attributes:
        deadline: Event-loop time at which the socket is closed.
        subject: The connection's subject; a refresh must carry the same.
    """

    def __init__(
        self,
        wsauth: WSAuth,
        request: Request,
        ws: Any,
        ticket: Ticket,
        *,
        max_age: float,
        refresh: bool,
    ) -> None:
        self._wsauth = wsauth
        self._request = request
        self._ws = ws
        self._loop = asyncio.get_running_loop()
        self.max_age = max_age
        self.subject = ticket.subject
        self.deadline = self._loop.time() + max_age
        #: Set once the socket is being closed (age cap, refused refresh):
        #: a refresh is too late then, and no data frame is delivered.
        self._closing = False
        #: Cuts off a client that ignores a close frame this lifetime sent.
        self._cut_off: asyncio.Task[None] | None = None
        self._filter_frames(refresh)

    def _filter_frames(self, refresh: bool) -> None:
        # Sanic's process_events() hands every data frame to
        # ``ws.assembler.put``; the assembler has __slots__, so a proxy
        # stands in front of it.
        self._ws.assembler = _FrameFilter(self._ws.assembler, self, refresh)

    def _is_open(self) -> bool:
        return bool(self._ws.ws_proto.state is State.OPEN)

    async def _close(self, code: int, reason: str) -> None:
        """Send the close frame; from now on no data frame reaches the handler,
        and a client that has not closed within the close timeout is cut off."""
        self._closing = True
        ws = self._ws
        # Started first and not awaited here: ws.close() waits for the send
        # lock, which a handler blocked sending to a client that does not
        # read holds for good; and a refused refresh runs inside Sanic's
        # frame reader, which must go on reading to see the client's close.
        self._cut_off = asyncio.create_task(self._cut_off_after_timeout(code, reason))
        try:
            await asyncio.wait_for(ws.close(code, reason), ws.close_timeout)
        except asyncio.TimeoutError:
            pass  # the cut-off ends the connection

    async def _cut_off_after_timeout(self, code: int, reason: str) -> None:
        ws = self._ws
        if not await ws.wait_for_connection_lost(timeout=ws.close_timeout):
            ws.fail_connection(code, reason)

    async def refresh(self, token: Any) -> bool:
        """Verify an in-band refresh ticket; extend the deadline or close 4003.

        Returns:
            Whether the socket stays open.
        """
        if self._closing or not self._is_open() or self._past_deadline():
            # Too late (the watch closes it with 4001 next: the event loop was
            # busy at the cap): the ticket is not spent.
            return False
        wsauth = self._wsauth
        request = self._request
        policy = policy_for(request.route)  # type: ignore[arg-type]
        try:
            ticket = wsauth._guard.check_ticket(request, token, policy, subject=self.subject)
            await wsauth._guard.claim(ticket)
        except WSAuthError as exc:
            await wsauth._observe_rejection(request, exc)
            if not self._closing:  # else the cap closed it during the claim
                await self._close(REFRESH_CLOSE_CODE, exc.reason)
            return False
        if self._closing or not self._is_open() or self._past_deadline():
            # The cap fired or came due, or the client left, during the claim
            # (a Redis round trip): the ticket is spent, the socket not extended.
            return False
        self.deadline = self._loop.time() + self.max_age
        request.ctx.ticket = ticket
        wsauth.counters["refreshed"] += 1
        try:
            await self._ws.send(
                json.dumps({"type": REFRESHED_TYPE, "expires_in": _expires_in(self.max_age)})
            )
        except Exception:  # noqa: BLE001 - the socket closed as we answered
            logger.debug("sanic-wsauth: socket closed before the refresh answer")
            return False
        return True

    def _past_deadline(self) -> bool:
        return self._loop.time() >= self.deadline

    async def watch(self) -> None:
        """Close the socket at the deadline; return early once it is gone."""
        try:
            await self._watch()
        finally:
            if self._cut_off is not None:
                self._cut_off.cancel()  # server stop, or done already

    async def _watch(self) -> None:
        ws = self._ws
        while True:
            remaining = self.deadline - self._loop.time()
            if remaining <= 0:
                break
            if await ws.wait_for_connection_lost(timeout=remaining):
                return
        if not self._closing:  # else a refused refresh closed it already
            if not self._is_open():
                # Closed by the handler or the client, and the connection
                # still up at the cap (a client ignoring a close frame): cut.
                ws.fail_connection(AGE_CLOSE_CODE, AGE_CLOSE_REASON)
                return
            self._wsauth.counters[AGE_CLOSE_REASON] += 1
            await self._close(AGE_CLOSE_CODE, AGE_CLOSE_REASON)
        if self._cut_off is not None:
            await self._cut_off


class AsgiLifetime(ConnectionLifetime):
    """The same protocol for Sanic behind an ASGI server.

    ASGI hands over whole messages, so refresh messages are taken out in
    ``recv()``: a refresh is handled when the handler next reads. The end of
    the socket shows in ``recv()`` or, for a handler that returns without
    reading it, in :meth:`handler_ended`. The close frame is bounded by
    :data:`ASGI_CLOSE_TIMEOUT`: ASGI offers no way to cut a connection, so a
    client that stops reading is left to the ASGI server's own timeouts.
    """

    def __init__(
        self,
        wsauth: WSAuth,
        request: Request,
        ws: Any,
        ticket: Ticket,
        *,
        max_age: float,
        refresh: bool,
    ) -> None:
        self._closed = False
        self._gone = asyncio.Event()
        super().__init__(wsauth, request, ws, ticket, max_age=max_age, refresh=refresh)
        # Always wrapped: recv() is also where the end of the socket shows.
        self._wrap_recv(refresh)

    def _filter_frames(self, refresh: bool) -> None:
        pass  # done by _wrap_recv

    def _wrap_recv(self, refresh: bool) -> None:
        # Shadow the connection's recv/receive on this socket only.
        ws = self._ws
        original = ws.recv

        async def recv(*args: Any, **kwargs: Any) -> Any:
            while True:
                if self._closed:  # closed for its age or a refused refresh
                    return None
                message = await original(*args, **kwargs)
                if self._closed:  # closed while this recv() waited
                    return None
                if message is None:  # websocket.disconnect
                    self._closed = True
                    self._gone.set()
                    return None
                if refresh and isinstance(message, str):
                    token = parse_refresh(message)
                    if token is not NOT_REFRESH:
                        if await self.refresh(token):
                            continue
                        return None
                return message

        ws.recv = ws.receive = recv

    def _is_open(self) -> bool:
        return not self._closed

    def handler_ended(self) -> None:
        """The route's handler returned or raised without reading the end of
        the socket (Sanic's own server sees the connection close instead)."""
        self._closed = True
        self._gone.set()  # the watch ends: nothing left to cap

    async def _close(self, code: int, reason: str) -> None:
        self._closed = True
        self._gone.set()
        try:
            # Bounded: the server's send waits while a client does not read.
            await asyncio.wait_for(asgi.close(self._request, code, reason), ASGI_CLOSE_TIMEOUT)
        except asyncio.TimeoutError:
            logger.debug("sanic-wsauth: the ASGI close did not go out (the client is not reading)")
        except Exception:  # noqa: BLE001 - the client is already gone
            logger.debug("sanic-wsauth: ASGI socket already closed")

    async def watch(self) -> None:
        """Close the socket at the deadline; return early once it is gone."""
        while True:
            remaining = self.deadline - self._loop.time()
            if remaining <= 0:
                break
            try:
                await asyncio.wait_for(self._gone.wait(), remaining)
                return
            except asyncio.TimeoutError:
                continue
        if self._is_open():
            self._closing = True
            self._wsauth.counters[AGE_CLOSE_REASON] += 1
            await self._close(AGE_CLOSE_CODE, AGE_CLOSE_REASON)


class LifetimeManager:
    """Start a :class:`ConnectionLifetime` for every authenticated socket.

    Registered on Sanic's ``websocket.handler.before`` signal, which runs
    after the 101 and before the route's handler is scheduled.
    """

    def __init__(self, wsauth: WSAuth) -> None:
        self._wsauth = wsauth
        self._tasks: set[asyncio.Task[None]] = set()
        #: The lifetime of each ASGI socket whose handler runs, by its request.
        self._asgi_live: dict[Request, AsgiLifetime] = {}

    async def before_handler(self, request: Request, websocket: Any) -> None:
        """Signal handler: arm the age cap (and refresh) on this socket."""
        config = self._wsauth.config
        ticket = getattr(request.ctx, "ticket", None)
        if config.max_connection_age <= 0 or not isinstance(ticket, Ticket):
            return  # off, or a public route
        kind = ConnectionLifetime if isinstance(websocket, WebsocketImplProtocol) else AsgiLifetime
        lifetime = kind(
            self._wsauth,
            request,
            websocket,
            ticket,
            max_age=config.max_connection_age,
            refresh=config.refresh,
        )
        task = asyncio.create_task(lifetime.watch())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        if isinstance(lifetime, AsgiLifetime):
            self._asgi_live[request] = lifetime
            # Also when no signal comes (a handler cancelled, or a closed
            # socket raising in it): the entry goes with the watch.
            task.add_done_callback(lambda _: self._asgi_live.pop(request, None))

    async def after_handler(
        self, request: Request, websocket: Any, exception: BaseException | None = None
    ) -> None:
        """Signal handler (``websocket.handler.after`` and ``.exception``): the
        socket's handler is done, so is its lifetime."""
        lifetime = self._asgi_live.pop(request, None)
        if lifetime is not None:
            lifetime.handler_ended()

    async def stop(self) -> None:
        """Cancel every watch (server stop)."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
