"""Redis replay set: one-time tickets across every worker and host.

Each claim is a single atomic command, ``SET <prefix><jti> 1 NX PX <ttl>``:
among any number of concurrent claims of one ``jti``, from any worker on any
host sharing the Redis, exactly one sees the key created. The key expires on
its own shortly after its ticket does, so nothing is left behind. Every
command only touches one key, so a Redis Cluster client works as well (put a
``{hash tag}`` in the prefix only if you want every key on one shard).

A ``redis://`` or ``unix://`` URL (host, port or socket, database, user and
password) is served by :mod:`sanic_wsauth.stores.resp`: one pipelined
connection per worker that every concurrent claim shares, with no driver in
between; it needs no extra package. ``rediss://`` (TLS), a URL with other
query options, or a client object the application passes in go through
redis-py.

Failure is closed: a refused connection, a timeout (every call is bounded by
``timeout``), an error reply or any other driver error raises
:class:`~sanic_wsauth.exceptions.StoreUnavailable` (HTTP 503) and the ticket
is not accepted. Connections are re-made on demand, so claims succeed again
as soon as Redis answers; no restart is needed.

redis-py is an optional dependency (``pip install 'sanic-wsauth[redis]'``); it
is imported only when a store needs it, so the rest of the package loads
without it.
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from ..exceptions import ConfigurationError, StoreUnavailable
from .base import ReplayStore
from .resp import (
    OK,
    AmbiguousClaim,
    LeanRedis,
    ProtocolError,
    RedisAddress,
    bounded,
    pack_command,
)

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.asyncio.cluster import RedisCluster

__all__ = [
    "DEFAULT_MARGIN",
    "DEFAULT_MAX_CONNECTIONS",
    "DEFAULT_PREFIX",
    "DEFAULT_TIMEOUT",
    "MIN_TTL_MS",
    "RedisReplayStore",
]

logger = logging.getLogger("sanic_wsauth")

DEFAULT_PREFIX = "wsauth:jti:"
#: Seconds allowed for one Redis call, connecting included.
DEFAULT_TIMEOUT = 0.25
#: Seconds an entry outlives its ticket: covers clock skew between hosts
#: (as much as the verifier's default leeway).
DEFAULT_MARGIN = 5.0
#: Connections in each worker's pool (URL mode).
DEFAULT_MAX_CONNECTIONS = 20
#: No entry lives shorter than this, whatever the clocks say.
MIN_TTL_MS = 1000

_SCHEMES = ("redis", "rediss", "unix")
_PING = pack_command(b"PING")


def set_nx_px(key: bytes, ttl_ms: int) -> bytes:
    """``SET key 1 NX PX ttl_ms``, packed: ``pack_command`` unrolled for the hot path."""
    ttl = b"%d" % ttl_ms
    return b"*6\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$1\r\n1\r\n$2\r\nNX\r\n$2\r\nPX\r\n$%d\r\n%s\r\n" % (
        len(key),
        key,
        len(ttl),
        ttl,
    )


def _misplaced_at(url: str) -> bool:
    """An ``@`` after the host part: a user name or password with an unescaped
    ``/``, ``?`` or ``#`` (base64 passwords have ``/``). Parsed as written,
    such a URL would put part of the password in the path or query and
    connect somewhere else with the rest of it."""
    rest = url.partition("://")[2]
    return "@" in rest[len(urlsplit(url).netloc) :]


def _by_hand(url: str) -> tuple[str, str, str, str]:
    """``(scheme, userinfo, host and path, query)``, cut at the *last* ``@``.

    Everything before that ``@`` may be password, whatever it holds.
    """
    scheme, _, rest = url.partition("://")
    userinfo, _, rest = rest.rpartition("@")
    where, _, query = rest.replace("#", "?", 1).partition("?")
    return scheme, userinfo, where, query


def _safe_url(url: str) -> str:
    """``url`` for messages and log lines: no password, no query (which may carry one)."""
    if _misplaced_at(url):
        scheme, _, where, _ = _by_hand(url)
        return f"{scheme}://***@{where}"
    parts = urlsplit(url)
    userinfo, at, host = parts.netloc.rpartition("@")
    if at:
        user, colon, _ = userinfo.partition(":")
        host = (f"{user}:***@" if colon and user else "***@") + host
    return f"{parts.scheme}://{host}{parts.path}"


_PIECE = re.compile(r"[^:/?#@&=]{2,}")


def _scrub(text: str, url: str) -> str:
    """``text`` (an error about ``url``) without any piece of its user info or query values.

    A parser's message can quote part of a password (``invalid literal for
    int(): 'etPassw0rd@host:6379'``), as given or percent-decoded.
    """
    _, userinfo, _, query = _by_hand(url)
    pieces = _PIECE.findall(userinfo)
    for pair in query.split("&"):
        pieces += _PIECE.findall(pair.partition("=")[2])
    for piece in sorted({*pieces, *map(unquote, pieces)}, key=len, reverse=True):
        text = text.replace(piece, "***")
    return text


def _unusable(url: str, exc: BaseException) -> ConfigurationError:
    return ConfigurationError(f"unusable Redis URL {_safe_url(url)}: {_scrub(str(exc), url)}")


class RedisReplayStore(ReplayStore):
    """A replay set in Redis, shared by every worker and host that uses it.

    Give it either a URL, from which each worker opens its own connection
    (inside the worker's event loop), or a redis-py asyncio client the
    application already has, ``redis.asyncio.Redis`` or
    ``redis.asyncio.cluster.RedisCluster``. A client passed in is used as is
    (its own retry and socket settings apply within ``timeout``) and is never
    closed by this store; its owner closes it.

    A ``redis://`` or ``unix://`` URL whose query holds nothing but ``db``,
    ``username`` or ``password`` gets one pipelined connection per worker
    (:mod:`sanic_wsauth.stores.resp`), shared by every concurrent claim.
    Any other URL (``rediss://``, driver options in the query) gets a
    redis-py pool of up to ``max_connections`` connections with ``timeout``
    as its connect and socket timeout. Either way, a claim that meets a
    dropped connection (Redis restarted, say) is sent once more on a fresh
    one, all within ``timeout``; a stall is not retried (and a connection
    that has answered nothing since a timed-out claim was sent is dropped).
    The resend never accepts a ticket twice: if the first ``SET`` did land,
    the second finds the key, and as that nil cannot tell a replay from the
    first ``SET``, the claim fails closed (503), never 401 ``replayed`` for a
    ticket that may not have been used. An error reply that says the node is
    no longer a usable primary (``READONLY`` or ``MASTERDOWN``: a failover
    behind one address) drops the store's connections, so the next claims
    reach the new primary.

    Args:
        url: ``redis://[[user]:[password]@]host[:port][/db]``, ``rediss://``
            (TLS) or ``unix://[[user]:[password]@]/path/to/socket``; query
            options as in ``redis.asyncio.from_url``.
        client: An application-owned redis-py asyncio client, instead of
            ``url``.
        prefix: Prepended to each ``jti`` to form its key.
        timeout: Seconds allowed for one claim, connecting included.
        margin: Seconds each entry outlives its ticket's ``expires_at``, so
            that hosts whose clocks lag still find it while they would
            accept the ticket.
        max_connections: Size of each worker's redis-py pool (URLs that
            need redis-py); claims beyond it wait for a free connection,
            within ``timeout``. The pipelined connection needs no pool.
        clock: Returns the current time in seconds; injected by tests.

    Raises:
        ConfigurationError: neither or both of ``url`` and ``client``, a URL
            of another scheme, or a value out of range.
    """

    shared = True

    def __init__(
        self,
        url: str | None = None,
        *,
        client: Redis | RedisCluster | None = None,
        prefix: str = DEFAULT_PREFIX,
        timeout: float = DEFAULT_TIMEOUT,
        margin: float = DEFAULT_MARGIN,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if (url is None) == (client is None):
            raise ConfigurationError("RedisReplayStore needs either a url or a client")
        try:
            scheme = urlsplit(url).scheme if url is not None else None
        except ValueError:  # an unclosed [IPv6 bracket, say; not echoed: it may hold a password
            raise ConfigurationError(
                "unusable Redis URL: it cannot be parsed (an unclosed [ of an IPv6 address?)"
            ) from None
        if url is not None and scheme not in _SCHEMES:
            raise ConfigurationError("the Redis URL must start with redis://, rediss:// or unix://")
        if url is not None and _misplaced_at(url):
            raise ConfigurationError(
                f"unusable Redis URL {_safe_url(url)}: percent-encode the user name, the "
                "password and query values (write / ? # @ as %2F %3F %23 %40)"
            )
        if not isinstance(prefix, str) or not prefix:
            raise ConfigurationError("the Redis key prefix must be a non-empty string")
        if not 0 < timeout < math.inf:  # NaN fails both comparisons
            raise ConfigurationError("the Redis timeout must be a positive, finite number")
        if not 0 <= margin < math.inf:
            raise ConfigurationError("the Redis expiry margin must be a finite number >= 0")
        if isinstance(max_connections, bool) or not (
            isinstance(max_connections, int) and max_connections >= 1
        ):
            raise ConfigurationError("max_connections must be a positive integer")
        self.url = url
        self.prefix = prefix
        self.timeout = float(timeout)
        self.margin = float(margin)
        self.max_connections = max_connections
        self._clock = clock
        self._client: Any = client
        self._owns_client = client is None
        self._healthy = True
        self._key_prefix = prefix.encode()
        self._lean: LeanRedis | None = None
        if url is not None:
            try:
                address = RedisAddress.from_url(url)
            except ValueError as exc:
                raise _unusable(url, exc) from None
            if address is not None:
                self._lean = LeanRedis(address, timeout=self.timeout)

    def __repr__(self) -> str:
        where = _safe_url(self.url) if self.url is not None else "client"
        return f"<RedisReplayStore {where} prefix={self.prefix!r}>"

    @property
    def client(self) -> Any:
        """The redis-py client in use: the one passed in, or the pool built for
        a URL that needs redis-py (None before :meth:`open`, and always None
        for a URL served by the pipelined connection)."""
        return self._client

    @property
    def pipelined(self) -> bool:
        """Whether claims go over the built-in pipelined connection."""
        return self._lean is not None

    def key(self, jti: str) -> str:
        """The Redis key that records ``jti``."""
        return self.prefix + jti

    def ttl_ms(self, expires_at: float) -> int:
        """Milliseconds an entry for a ticket expiring at ``expires_at`` lives."""
        remaining = expires_at - self._clock() + self.margin
        return max(MIN_TTL_MS, math.ceil(remaining * 1000))

    async def open(self) -> None:
        """Connect (URL mode) and check that Redis answers.

        An unreachable Redis does not stop start-up: it is logged, handshakes
        get 503 until Redis answers, and then succeed with no restart.

        Raises:
            ConfigurationError: the URL cannot be used.
        """
        try:
            if self._lean is not None:
                await self._lean.execute(_PING)
            else:
                await bounded(self._redis_py().ping(), self.timeout)
        except ConfigurationError:
            raise
        except Exception as exc:  # noqa: BLE001 - reported, claims fail closed
            self._mark_down(exc)

    def _redis_py(self) -> Any:
        """The redis-py client: the one passed in, else a pool for the URL, built
        on first use (in :meth:`open`, or at the first claim outside a Sanic
        lifecycle)."""
        if self._client is None:
            self._client = self._connect()
        return self._client

    def _connect(self) -> Any:
        assert self.url is not None  # noqa: S101 - __init__ guarantees it
        try:
            from redis.asyncio import BlockingConnectionPool, Redis
            from redis.asyncio.retry import Retry
            from redis.backoff import NoBackoff
        except ImportError as exc:
            raise ConfigurationError(
                "this Redis URL needs redis-py (only redis:// and unix:// URLs without "
                "driver options do not): pip install 'sanic-wsauth[redis]'"
            ) from exc
        try:
            # A burst of handshakes waits (within timeout) for a free
            # connection instead of failing at the pool's limit.
            pool = BlockingConnectionPool.from_url(
                self.url,
                max_connections=self.max_connections,
                timeout=self.timeout,
                socket_timeout=self.timeout,
                socket_connect_timeout=self.timeout,
                # No retry inside redis-py: claim() sends a SET once more
                # itself, and knows that a nil reply to it is ambiguous.
                retry=Retry(NoBackoff(), 0),
            )
        except (ValueError, TypeError) as exc:
            raise _unusable(self.url, exc) from None
        return Redis.from_pool(pool)

    async def claim(self, jti: str, expires_at: float) -> bool:
        """Record ``jti`` with one ``SET key 1 NX PX ttl``.

        Returns:
            True when this call created the key, False when it existed.

        Raises:
            StoreUnavailable: Redis did not confirm either way within
                ``timeout`` (down, stalled, refusing, or an error reply).
        """
        try:
            ttl = self.ttl_ms(expires_at)
            if self._lean is not None:
                # Only +OK (set: a first use) and nil (the key existed) get
                # through; any other reply drops the connection, and fails here.
                payload = set_nx_px(self._key_prefix + jti.encode(), ttl)
                first_use = await self._lean.execute(payload, set_nx=True) is OK
            else:
                first_use = await bounded(self._set_nx(self.key(jti), ttl), self.timeout)
        except ConfigurationError:
            raise
        except Exception as exc:
            self._mark_down(exc)
            raise StoreUnavailable("the Redis replay store did not answer") from exc
        if not self._healthy:
            self._healthy = True
            logger.info("sanic-wsauth: Redis replay store answers again: %r", self)
        return first_use

    async def _set_nx(self, key: str, ttl: int) -> bool:
        """``SET key 1 NX PX ttl`` through redis-py: True for +OK, False for nil.

        A stale pooled connection (Redis restarted) fails on first use: the
        SET is sent once more, on a fresh one. If Redis hung up after running
        the first, the second finds the key: nil is then ambiguous and fails
        closed (:class:`AmbiguousClaim`) instead of refusing the ticket as
        replayed. A node that says it is no longer the primary (a failover
        behind one address) gets the store's own pool disconnected, so the
        next claims reach the new one.
        """
        from redis.exceptions import ConnectionError as RedisConnectionError
        from redis.exceptions import MasterDownError, ReadOnlyError

        client = self._redis_py()
        try:
            try:
                result = await client.set(key, b"1", nx=True, px=ttl)
                retried = False
            except RedisConnectionError:
                result = await client.set(key, b"1", nx=True, px=ttl)
                retried = True
        except (ReadOnlyError, MasterDownError):
            if self._owns_client:
                await client.connection_pool.disconnect()
            raise
        # redis-py turns +OK into True and a nil reply into None.
        if result is not True and result is not None:
            raise ProtocolError(f"a {type(result).__name__} reply that SET NX cannot give")
        if result is None and retried:
            raise AmbiguousClaim("a SET NX sent again found its key")
        return result is True

    def _mark_down(self, exc: BaseException) -> None:
        # One line when Redis goes away, not one per handshake.
        if self._healthy:
            self._healthy = False
            logger.warning(
                "sanic-wsauth: Redis replay store unavailable (%s); websocket "
                "handshakes get 503 store_unavailable until it answers: %r",
                type(exc).__name__,
                self,
            )

    async def close(self) -> None:
        """Close what this store opened; leave an application's client open."""
        if self._lean is not None:
            await self._lean.close()
        if self._owns_client and self._client is not None:
            client, self._client = self._client, None
            await client.aclose()
