"""A lean, pipelined Redis connection: just what one replay claim needs.

The replay claim is one command, ``SET key 1 NX PX ttl``, on the handshake's
hot path. redis-py spends most of a claim's CPU time on machinery the claim
does not need (a connection pool, a retry wrapper, response callbacks, a
stream reader per reply). This module speaks RESP2 directly over one
``asyncio.Protocol`` per worker: every concurrent claim writes its command to
the same socket and waits on a future; Redis answers in order, so replies
are matched first in, first out. One read often carries many replies.

Only what ``redis://`` and ``unix://`` URLs describe is supported: host, port
or socket path, database, username and password. Anything else (TLS, driver
options in the query string, Redis Cluster) is left to redis-py (see
:class:`~sanic_wsauth.stores.redis.RedisReplayStore`).

Faults surface as built-in exceptions: ``ConnectionError`` (refused, reset,
lost), ``TimeoutError`` (no reply by the deadline) and :class:`ReplyError`
(an error reply such as ``NOAUTH`` or ``OOM``), so callers fail closed.
"""

from __future__ import annotations

import asyncio
import sys
from collections import deque
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import TypeVar, cast
from urllib.parse import parse_qsl, unquote, urlsplit

__all__ = [
    "AmbiguousClaim",
    "DroppedConnection",
    "OK",
    "LeanRedis",
    "ProtocolError",
    "RedisAddress",
    "ReplyError",
    "SimpleString",
    "bounded",
    "pack_command",
]

_T = TypeVar("_T")

#: Query keys a lean URL may carry; any other key needs redis-py.
_QUERY_KEYS = frozenset({"db", "username", "password"})
#: A connection with this many replies outstanding is considered wedged.
MAX_PENDING = 65_536
_NEVER = float("inf")
#: Seconds: a command due this close to a watchdog pass is failed in it.
_TIMER_SLACK = 0.001


async def bounded(call: Awaitable[_T], timeout: float) -> _T:
    """Await ``call``, raising ``TimeoutError`` after ``timeout`` seconds."""
    if sys.version_info >= (3, 11):
        async with asyncio.timeout(timeout):
            return await call
    return await asyncio.wait_for(call, timeout)  # pragma: no cover - Python 3.10


class ReplyError(Exception):
    """Redis answered with an error reply (``-ERR ...``)."""


class SimpleString(bytes):
    """A simple-string reply (``+OK``), told apart from a bulk string of the same bytes."""

    __slots__ = ()


#: The ``+OK`` reply: :func:`_parse` returns this very object for it.
OK = SimpleString(b"OK")


class ProtocolError(ConnectionError):
    """Redis sent something that is not a RESP2 reply; the connection is dropped."""


class AmbiguousClaim(ConnectionError):
    """A ``SET NX`` sent again after Redis hung up found its key.

    Redis may have run the first one before it hung up, so nil does not tell
    a replay from this very claim: the claim fails closed (503) rather than
    refuse a ticket that may never have been used as replayed (401).
    """


#: Error replies after which the connection goes (the next call reconnects):
#: the node it reaches is no longer the primary (a failover behind one
#: address: a VIP, a DNS name, a proxy that keeps existing sessions).
_ROLE_ERRORS = ("READONLY", "MASTERDOWN")


class DroppedConnection(ConnectionError):
    """This side dropped the connection (wedged, or a garbled stream).

    Commands in flight on it may have reached Redis, so they are not sent
    again: a repeated ``SET NX`` would find its own key and refuse a ticket
    that was never used.
    """


@dataclass(frozen=True)
class RedisAddress:
    """Where and as whom to connect: what a ``redis://`` or ``unix://`` URL says."""

    host: str = "localhost"
    port: int = 6379
    path: str | None = None  # a unix socket, instead of host and port
    db: int = 0
    username: str | None = None
    password: str | None = None

    @classmethod
    def from_url(cls, url: str) -> RedisAddress | None:
        """Parse ``url``; None when it needs more than this module offers.

        Raises:
            ValueError: the URL is malformed (a bad port or database number).
        """
        parts = urlsplit(url)
        if parts.scheme not in ("redis", "unix") or parts.fragment:
            return None
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        if not query.keys() <= _QUERY_KEYS:
            return None
        username = query.get("username") or (unquote(parts.username) if parts.username else None)
        # An empty password is no password: no AUTH is sent.
        password = query.get("password") or (unquote(parts.password) if parts.password else None)
        if parts.scheme == "unix":
            if not parts.path:
                raise ValueError("a unix:// URL needs a socket path")
            db = int(query.get("db") or 0)
            return cls(path=unquote(parts.path), db=db, username=username, password=password)
        path_db = parts.path.lstrip("/")
        db = int(query.get("db") or path_db or 0)
        port = parts.port or 6379  # raises ValueError when out of range
        return cls(
            host=parts.hostname or "localhost",
            port=port,
            db=db,
            username=username,
            password=password,
        )


def _bulk(arg: bytes) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(arg), arg)


def pack_command(*args: bytes) -> bytes:
    """One command as a RESP2 array of bulk strings."""
    return b"*%d\r\n" % len(args) + b"".join(_bulk(arg) for arg in args)


_Reply = bytes | int | None | ReplyError
_INCOMPLETE = object()


def _parse(buf: bytearray, pos: int) -> tuple[object, int]:
    """One reply from ``buf`` at ``pos``: (reply, next position) or (_INCOMPLETE, pos)."""
    end = buf.find(b"\r\n", pos)
    if end < 0:
        return _INCOMPLETE, pos
    kind = buf[pos]
    line = bytes(buf[pos + 1 : end])
    if kind == 0x2B:  # "+" simple string
        return (OK if line == b"OK" else SimpleString(line)), end + 2
    if kind == 0x24:  # "$" bulk string
        size = int(line)
        if size < 0:
            return None, end + 2
        stop = end + 2 + size
        if len(buf) < stop + 2:
            return _INCOMPLETE, pos
        return bytes(buf[end + 2 : stop]), stop + 2
    if kind == 0x2D:  # "-" error
        return ReplyError(line.decode("utf-8", "replace")), end + 2
    if kind == 0x3A:  # ":" integer
        return int(line), end + 2
    raise ProtocolError("unexpected reply type from Redis")


class _Connection(asyncio.Protocol):
    """One socket; replies resolve the oldest pending future.

    Each command waits until its deadline. One timer per connection (the
    watchdog), armed for the earliest deadline in flight, enforces them all:
    a command costs no timer of its own, which in a busy worker is a
    noticeable share of a claim (a timer handle made and cancelled each
    time).
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._buf = bytearray()
        #: (future, deadline, sent at), in the order the commands went out.
        self._pending: deque[tuple[asyncio.Future[_Reply], float, float]] = deque()
        self._watchdog: asyncio.TimerHandle | None = None
        self._watch_at = _NEVER
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.dropped = False
        #: loop.time() of the last bytes received (or of the connect).
        self.last_rx = loop.time()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport (uvloop's are not asyncio.Transport subclasses).
        self.transport = cast(asyncio.Transport, transport)
        self.last_rx = self._loop.time()

    def data_received(self, data: bytes) -> None:
        self.last_rx = self._loop.time()
        buf = self._buf
        buf += data
        pos = 0
        pending = self._pending
        try:
            while pos < len(buf):
                reply, after = _parse(buf, pos)
                if reply is _INCOMPLETE:
                    break
                if not pending:
                    raise ProtocolError("a reply from Redis that nothing asked for")
                pos = after
                future = pending.popleft()[0]
                if not future.done():  # a claim that timed out is skipped
                    future.set_result(reply)  # type: ignore[arg-type]
        except (ProtocolError, ValueError):
            self.abort()
            return
        del buf[:pos]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        error = (
            DroppedConnection("the connection to Redis was dropped")
            if self.dropped
            else ConnectionError("the connection to Redis was lost")
        )
        while self._pending:
            future = self._pending.popleft()[0]
            if not future.done():
                future.set_exception(error)

    @property
    def usable(self) -> bool:
        """Connected, and neither lost nor closing."""
        return not self.closed and self.transport is not None and not self.transport.is_closing()

    def send(self, payload: bytes, deadline: float) -> asyncio.Future[_Reply]:
        """Write one packed command; its future fails with ``TimeoutError`` at ``deadline``."""
        transport = self.transport
        if self.closed or transport is None or transport.is_closing():
            raise ConnectionError("the connection to Redis is closed")
        if len(self._pending) >= MAX_PENDING:
            self.abort()
            raise ConnectionError("too many Redis replies outstanding")
        loop = self._loop
        future: asyncio.Future[_Reply] = loop.create_future()
        self._pending.append((future, deadline, loop.time()))
        transport.write(payload)
        if deadline < self._watch_at:
            self._arm(deadline)
        return future

    def _arm(self, when: float) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
        self._watch_at = when
        self._watchdog = self._loop.call_at(when, self._expire, when)

    def _expire(self, when: float) -> None:
        """The watchdog: fail every command now due; re-arm for the next one."""
        self._watchdog = None
        self._watch_at = _NEVER
        # Due: what a timer of its own would have fired for in this same
        # loop pass (timers fire to the millisecond).
        now = max(when, self._loop.time()) + _TIMER_SLACK
        earliest = _NEVER
        wedged = False
        for future, deadline, sent_at in list(self._pending):
            if future.done():
                continue
            if deadline > now:
                earliest = min(earliest, deadline)
                continue
            future.set_exception(TimeoutError("Redis did not answer in time"))
            # Nothing at all came back since this command went out: the
            # connection (or Redis) is wedged.
            wedged = wedged or self.last_rx < sent_at
        if wedged:
            # Drop it: what else is in flight on it fails closed (and is not
            # sent again); the next call reconnects.
            self.abort()
        elif earliest < _NEVER:
            self._arm(earliest)

    def abort(self) -> None:
        if self.transport is not None and not self.closed:
            self.dropped = True
            self.transport.abort()  # connection_lost fails what is pending

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class LeanRedis:
    """One pipelined connection to Redis, connected on demand.

    Every call is bounded by ``timeout`` seconds, connecting included. A call
    that meets a connection Redis closed before answering (a restart, say)
    is sent once more on a fresh one within the same bound, so callers must
    only send commands that are safe to repeat; a ``SET NX`` so repeated that
    finds its key raises :class:`AmbiguousClaim`. A call on a connection this
    side dropped (wedged, or garbled) is not repeated. An error reply saying
    that the node is no longer the primary drops the connection.

    Args:
        address: Where and as whom to connect.
        timeout: Seconds allowed for one call, connecting included.
    """

    def __init__(self, address: RedisAddress, *, timeout: float) -> None:
        self.address = address
        self.timeout = timeout
        self._conn: _Connection | None = None
        self._connecting: asyncio.Task[_Connection] | None = None
        self._setup = self._setup_commands(address)

    @staticmethod
    def _setup_commands(address: RedisAddress) -> list[bytes]:
        commands = []
        if address.password is not None:
            credentials = [address.password.encode()]
            if address.username:
                credentials.insert(0, address.username.encode())
            commands.append(pack_command(b"AUTH", *credentials))
        if address.db:
            commands.append(pack_command(b"SELECT", str(address.db).encode()))
        return commands

    async def execute(self, payload: bytes, *, set_nx: bool = False) -> bytes | int | None:
        """Send one packed command; return its reply.

        Args:
            payload: The packed command.
            set_nx: The command is a ``SET ... NX``, whose only replies are
                :data:`OK` and nil. Any other means the stream cannot be
                trusted: the connection is dropped (its other commands fail).

        Raises:
            ConnectionError: Redis could not be reached, or hung up twice;
                :class:`ProtocolError` for a reply ``SET NX`` cannot give.
            TimeoutError: no reply within ``timeout``.
            ReplyError: Redis answered with an error.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        retried = False
        while True:
            conn = self._conn
            if conn is None or not conn.usable:
                conn = await self._connect(deadline)
                fresh = True
            else:
                fresh = False
            try:
                reply = await conn.send(payload, deadline)
            except ConnectionError:
                # A connection Redis cut while it sat idle (a restart) fails
                # on first use; one more try on a new connection hides that.
                # Not after this side dropped it: the SET may have landed.
                if fresh or retried or conn.dropped or loop.time() >= deadline:
                    raise
                retried = True
                continue
            if isinstance(reply, ReplyError):
                if str(reply).startswith(_ROLE_ERRORS):
                    conn.abort()  # a failover: the next call connects to the new primary
                raise reply
            if set_nx and reply is not OK:
                if reply is not None:
                    conn.abort()
                    raise ProtocolError("a reply that SET NX cannot give")
                if retried:
                    raise AmbiguousClaim("a SET NX sent again found its key")
            return reply

    async def _connect(self, deadline: float) -> _Connection:
        # Concurrent callers share one connection attempt, a task of its own:
        # a caller cancelled meanwhile (its client left) stops only its own
        # wait, and each waits no longer than its own deadline.
        loop = asyncio.get_running_loop()
        attempt = self._connecting
        if attempt is None:
            attempt = self._connecting = loop.create_task(self._open(deadline))
            attempt.add_done_callback(self._connected)
        try:
            return await bounded(asyncio.shield(attempt), max(0.0, deadline - loop.time()))
        except asyncio.CancelledError:
            # close() cancelled the attempt: this caller was not cancelled
            # itself, so it fails like any call that cannot connect.
            task = asyncio.current_task()
            cancelling = getattr(task, "cancelling", None)  # Python 3.11+
            if attempt.cancelled() and not (cancelling is not None and cancelling()):
                raise ConnectionError("the connection was closed while it opened") from None
            raise

    def _connected(self, attempt: asyncio.Task[_Connection]) -> None:
        if self._connecting is attempt:
            self._connecting = None
        if not attempt.cancelled():
            attempt.exception()  # retrieved, if every caller stopped waiting

    async def _open(self, deadline: float) -> _Connection:
        loop = asyncio.get_running_loop()
        address = self.address
        conn = _Connection(loop)
        remaining = max(0.0, deadline - loop.time())
        try:
            if address.path is not None:
                opening = loop.create_unix_connection(lambda: conn, address.path)
            else:
                opening = loop.create_connection(lambda: conn, address.host, address.port)
            await bounded(opening, remaining)
            replies = [conn.send(command, deadline) for command in self._setup]
            for reply in await bounded(asyncio.gather(*replies), deadline - loop.time()):
                if isinstance(reply, ReplyError):
                    raise reply
        except BaseException:
            conn.abort()
            raise
        self._conn = conn
        return conn

    async def close(self) -> None:
        """Close the connection; a later call opens a new one."""
        attempt, self._connecting = self._connecting, None
        if attempt is not None:
            attempt.cancel()  # _open aborts what it opened
            await asyncio.gather(attempt, return_exceptions=True)
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()
