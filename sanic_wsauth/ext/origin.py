"""Origin allowlist against Cross-Site WebSocket Hijacking."""

from __future__ import annotations

from urllib.parse import urlsplit

from multidict import istr
from sanic import Request
from sanic.config import Config

from ..exceptions import OriginForbidden
from .asgi import scope_is_secure
from .headers import ORIGIN as _ORIGIN
from .headers import header_get as _get
from .headers import header_getall as _getall

__all__ = ["OriginPolicy", "normalize_origin"]

_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}
#: Distinct origin strings remembered per policy; past this the memo starts
#: afresh, so odd Origin headers cannot grow it without bound.
MEMO_SIZE = 512
_HOST = istr("host")
#: dict's C method, past the Python-level ``__getattr__`` of Sanic's Config.
_config_get = dict.get
_HTTP_SCHEME = {"ws": "http", "wss": "https", "http": "http", "https": "https"}


def normalize_origin(origin: str) -> str | None:
    """Return ``scheme://host[:port]`` lower-cased with default ports dropped.

    Anything that is not a bare http(s) origin (a path, credentials, an
    opaque ``null``) gives None, which never matches.
    """
    try:
        parts = urlsplit(origin.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = _HTTP_SCHEME.get(parts.scheme.lower())
    host = parts.hostname
    if (
        scheme is None
        or not host
        or parts.username is not None
        or parts.password is not None
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
    ):
        return None
    if ":" in host:
        host = f"[{host}]"
    if port is None or port == _DEFAULT_PORTS[scheme]:
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


class OriginPolicy:
    """Decide whether a handshake's ``Origin`` may open a socket.

    Allowed: the server's own origin (scheme and host as the request sees
    them, so proxy settings apply) and every origin in ``allowed``; exact
    matches only. A request without ``Origin`` (not a browser) passes unless
    ``allow_missing`` is False.
    """

    __slots__ = ("_memo", "allow_missing", "allowed")

    def __init__(self, allowed: tuple[str, ...], *, allow_missing: bool) -> None:
        normalized = set()
        for origin in allowed:
            if "*" in origin:
                raise ValueError(f"wildcards are not supported: {origin!r} (list each origin)")
            value = normalize_origin(origin)
            if value is None:
                raise ValueError(f"not an origin: {origin!r} (use scheme://host[:port])")
            normalized.add(value)
        self.allowed = frozenset(normalized)
        self.allow_missing = allow_missing
        # A site sees a handful of origins, each on every handshake: parse
        # each string once (normalize_origin is pure).
        self._memo: dict[str, str | None] = {}

    def _normalize(self, origin: str) -> str | None:
        memo = self._memo
        try:
            return memo[origin]
        except KeyError:
            pass
        if len(memo) >= MEMO_SIZE:
            memo.clear()
        value = memo[origin] = normalize_origin(origin)
        return value

    def check(self, request: Request) -> None:
        """Raise :class:`OriginForbidden` unless the request's origin is allowed."""
        headers = request.headers
        if _ORIGIN not in headers:  # a tenth of a getall: clients other than browsers
            if self.allow_missing:
                return
            raise OriginForbidden("no Origin header")
        values = _getall(headers, _ORIGIN)
        if len(values) > 1:
            raise OriginForbidden("several Origin headers")
        origin = self._normalize(values[0])
        if origin is None:
            raise OriginForbidden("unparseable Origin")
        if origin in self.allowed or origin == self._own_origin(request):
            return
        raise OriginForbidden()

    def _own_origin(self, request: Request) -> str | None:
        config = request.app.config
        if (
            request.__class__ is Request  # an app's own class may redefine scheme/host
            and config.__class__ is Config  # a subclass may declare settings as attributes
            and not hasattr(request, "_scheme")  # set by HTTP/3 from the client's :scheme
            and _config_get(config, "SERVER_NAME", "") == ""
            and not _config_get(config, "FORWARDED_SECRET")
            and not _config_get(config, "REAL_IP_HEADER")
            and not _config_get(config, "PROXIES_COUNT")
        ):
            # No proxy settings: Sanic's request.scheme and request.host then
            # read only TLS and the Host header (ws/wss normalize to
            # http/https), and cost some 35,000 instructions a request (a
            # test holds the two to the same answers).
            conn_info = request.conn_info
            secure = conn_info is not None and conn_info.ssl
            if not secure and request.app.asgi:
                secure = scope_is_secure(request)
            scheme = "https" if secure else "http"
            return self._normalize(f"{scheme}://{_get(request.headers, _HOST, '')}")
        try:
            scheme = request.scheme
            if (
                scheme in ("ws", "http")
                and request.app.asgi
                and "://" not in str(_config_get(config, "SERVER_NAME", ""))
                and "proto" not in request.forwarded
                and scope_is_secure(request)
            ):
                # Sanic fell back to its ASGI connection info, which never
                # reports TLS: take the ASGI server's word instead.
                scheme = "https"
            return self._normalize(f"{scheme}://{request.host}")
        except Exception:  # noqa: BLE001 - a bad Host header just never matches
            return None
