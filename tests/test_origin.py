"""Origin allowlist (Cross-Site WebSocket Hijacking), on a real server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sanic import Request, Sanic

from sanic_wsauth import ConfigurationError, WSAuth
from sanic_wsauth.ext.origin import MEMO_SIZE, OriginPolicy, normalize_origin

from ._raw import raw_upgrade
from ._support import Served, handshake, serve

ALLOWED = "https://app.example.com"


def _app(name: str, secret: str, **options: Any) -> tuple[Sanic[Any, Any], WSAuth]:
    app: Sanic[Any, Any] = Sanic(name)
    wsauth = WSAuth(app, secret_keys=secret, **options)

    @app.websocket("/ws")
    async def echo(request: Request, ws: Any) -> None:
        async for message in ws:
            await ws.send(message)

    return app, wsauth


@pytest.fixture
async def server(secret: str, app_name: str) -> AsyncIterator[tuple[Served, WSAuth]]:
    app, wsauth = _app(app_name, secret, allowed_origins=[ALLOWED, "http://localhost:3000"])
    async with serve(app) as srv:
        yield srv, wsauth


@pytest.mark.parametrize(
    "origin",
    [
        None,  # not a browser: allowed by default
        "https://app.example.com",
        "https://app.example.com:443",
        "https://app.example.com/",
        "HTTPS://App.Example.COM",
        "http://localhost:3000",
        "self",  # the server's own origin
    ],
)
async def test_allowed(server: Any, origin: str | None) -> None:
    srv, wsauth = server
    if origin == "self":
        origin = srv.http
    result = await handshake(f"{srv.ws}/ws?token={wsauth.issue('a')}", origin=origin)
    assert result.status == 101 and result.reply == "ping"


@pytest.mark.parametrize(
    "origin",
    [
        "https://evil.example",
        "http://app.example.com",  # other scheme
        "https://app.example.com:8443",  # other port
        "https://app.example.com.evil.example",  # suffix trick
        "https://evil.example/?https://app.example.com",
        "https://app.example.com/path",
        "https://user@app.example.com",
        "https://app.example.com#x",
        "http://localhost:3001",
        "http://localhost",
        "null",
        "",
        "*",
        "file://",
        "https://app.example.com:99999",
        "https://app.example.com, https://evil.example",
        "self-other-port",
    ],
)
async def test_forbidden(server: Any, origin: str) -> None:
    srv, wsauth = server
    if origin == "self-other-port":
        origin = f"http://127.0.0.1:{srv.port + 1}"
    token = wsauth.issue("a")
    refused = await handshake(f"{srv.ws}/ws?token={token}", origin=origin)
    assert refused.status == 403
    assert refused.body == b'{"error":"origin_forbidden"}'
    # Checked before the ticket: it was not consumed.
    assert (await handshake(f"{srv.ws}/ws?token={token}")).status == 101


async def test_two_origin_headers_are_refused(server: Any) -> None:
    srv, wsauth = server
    response = await raw_upgrade(
        srv.port,
        f"/ws?token={wsauth.issue('a')}",
        [("Origin", ALLOWED), ("Origin", ALLOWED)],
    )
    assert response.status == 403 and response.json() == {"error": "origin_forbidden"}


async def test_non_ascii_origin_is_refused_not_an_error(server: Any) -> None:
    srv, wsauth = server
    for origin in ("https://äpp.example.com", "https://app.example.com\udcff", "http://[::1"):
        response = await raw_upgrade(
            srv.port, f"/ws?token={wsauth.issue('a')}", [("Origin", origin)]
        )
        assert response.status in (400, 403), origin
        if response.status == 403:
            assert response.json() == {"error": "origin_forbidden"}


async def test_missing_origin_refusable(secret: str, app_name: str) -> None:
    app, wsauth = _app(app_name, secret, allow_missing_origin=False)
    async with serve(app) as srv:
        refused = await handshake(f"{srv.ws}/ws?token={wsauth.issue('a')}")
        assert refused.status == 403 and b"origin_forbidden" in refused.body
        ok = await handshake(f"{srv.ws}/ws?token={wsauth.issue('a')}", origin=srv.http)
        assert ok.status == 101


async def test_check_can_be_disabled(secret: str, app_name: str) -> None:
    app, wsauth = _app(app_name, secret)
    app.config.WSAUTH_CHECK_ORIGIN = False
    async with serve(app) as srv:
        ok = await handshake(f"{srv.ws}/ws?token={wsauth.issue('a')}", origin="https://x.example")
        assert ok.status == 101


async def test_env_style_list(secret: str, app_name: str) -> None:
    app, wsauth = _app(app_name, secret)
    app.config.WSAUTH_ALLOWED_ORIGINS = "https://a.example, https://b.example:8443"
    async with serve(app) as srv:
        for origin, status in (
            ("https://a.example", 101),
            ("https://b.example:8443", 101),
            ("https://b.example", 403),
        ):
            got = await handshake(f"{srv.ws}/ws?token={wsauth.issue('a')}", origin=origin)
            assert got.status == status, origin


async def test_own_origin_behind_a_proxy(secret: str, app_name: str) -> None:
    """The own origin follows X-Forwarded-Proto/Host only when proxies are trusted."""
    public = "https://chat.example.org"
    forwarded = {"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https"}
    forwarded["X-Forwarded-Host"] = "chat.example.org"

    trusting, wsauth = _app(app_name, secret)
    trusting.config.PROXIES_COUNT = 1
    async with serve(trusting) as srv:
        url = f"{srv.ws}/ws?token={wsauth.issue('a')}"
        assert (await handshake(url, origin=public, headers=forwarded)).status == 101
        direct = await handshake(f"{srv.ws}/ws?token={wsauth.issue('a')}", origin=public)
        assert direct.status == 403

    naive, wsauth2 = _app(app_name + "_naive", secret)
    async with serve(naive) as srv:
        # No proxy configured: forged forwarding headers change nothing.
        url = f"{srv.ws}/ws?token={wsauth2.issue('a')}"
        refused = await handshake(url, origin=public, headers=forwarded)
        assert refused.status == 403


async def test_forwarded_secret_proxy(secret: str, app_name: str) -> None:
    app, wsauth = _app(app_name, secret)
    app.config.FORWARDED_SECRET = "proxy-secret-1"
    good = {"Forwarded": "for=198.51.100.4;proto=https;host=chat.example.org;secret=proxy-secret-1"}
    bad = {"Forwarded": "for=198.51.100.4;proto=https;host=chat.example.org;secret=guess"}
    async with serve(app) as srv:
        ok = await handshake(
            f"{srv.ws}/ws?token={wsauth.issue('a')}",
            origin="https://chat.example.org",
            headers=good,
        )
        assert ok.status == 101
        refused = await handshake(
            f"{srv.ws}/ws?token={wsauth.issue('a')}", origin="https://chat.example.org", headers=bad
        )
        assert refused.status == 403


@pytest.mark.parametrize(
    "entry", ["*", "https://*.example.com", "example.com", "https://a.example/path", "null"]
)
async def test_bad_allowlist_entries_stop_start_up(secret: str, app_name: str, entry: str) -> None:
    app, _ = _app(app_name, secret)
    app.config.WSAUTH_ALLOWED_ORIGINS = [entry]
    with pytest.raises(ConfigurationError, match="ALLOWED_ORIGINS"):
        async with serve(app):
            pass


async def test_origin_decisions_hold_while_the_memo_churns(server: Any) -> None:
    # Each distinct Origin string is parsed once and remembered; past
    # MEMO_SIZE the memo starts afresh instead of growing.
    srv, wsauth = server
    policy = wsauth.origin_policy
    for i in range(MEMO_SIZE + 50):
        refused = await handshake(
            f"{srv.ws}/ws?token={wsauth.issue('a')}", origin=f"https://evil{i}.example"
        )
        assert refused.status == 403
        assert len(policy._memo) <= MEMO_SIZE
        if i % 100 == 0:
            for origin in (ALLOWED, srv.http):
                ok = await handshake(f"{srv.ws}/ws?token={wsauth.issue('a')}", origin=origin)
                assert ok.status == 101


def test_normalize_origin() -> None:
    assert normalize_origin("https://A.example:443") == "https://a.example"
    assert normalize_origin("http://a.example:80/") == "http://a.example"
    assert normalize_origin("wss://a.example") == "https://a.example"
    assert normalize_origin("http://[::1]:8000") == "http://[::1]:8000"
    assert normalize_origin("http://[::1]") == "http://[::1]"
    for junk in ("", "null", "a.example", "ftp://a.example", "https://", "https://a:b@c"):
        assert normalize_origin(junk) is None
    with pytest.raises(ValueError, match="wildcard"):
        OriginPolicy(("https://*.a.example",), allow_missing=True)


class _Transport:
    """What ConnInfo reads of a connection (TLS or not); the request's only input here."""

    def __init__(self, tls: bool) -> None:
        self._extra = {
            "peername": ("127.0.0.1", 50000),
            "sockname": ("127.0.0.1", 8000),
            "ssl_object": SimpleNamespace(context=SimpleNamespace()) if tls else None,
        }

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._extra.get(name, default)


_PROXY_SETTINGS: list[dict[str, Any]] = [
    {},
    {"PROXIES_COUNT": 1},
    {"REAL_IP_HEADER": "x-real-ip"},
    {"FORWARDED_SECRET": "s3cret"},
    {"SERVER_NAME": "https://chat.example.org"},
]
_HOSTS = st.one_of(
    st.sampled_from(
        ["127.0.0.1:8000", "LOCALHOST", "[::1]:8443", "example.com:80", "", "a b", "x:y", "[::1"]
    ),
    st.text(alphabet="abc.:[]0189 -_%@/\u00e9", max_size=20),
)


@settings(max_examples=300, deadline=None)
@given(
    host=st.one_of(st.none(), _HOSTS),
    tls=st.booleans(),
    upgrade=st.booleans(),
    proxy=st.sampled_from(range(len(_PROXY_SETTINGS))),
    forwarded=st.booleans(),
)
def test_own_origin_is_what_sanic_says(
    host: str | None, tls: bool, upgrade: bool, proxy: int, forwarded: bool
) -> None:
    """The guard's own origin, read without Sanic's request.scheme/host when no
    proxy is configured, is exactly what those properties give."""
    from sanic.compat import Header
    from sanic.models.server_types import ConnInfo

    app = _ORIGIN_APPS[proxy]
    pairs = [("upgrade", "websocket")] if upgrade else []
    if host is not None:
        pairs.append(("host", host))
    if forwarded:
        pairs += [
            ("x-forwarded-for", "203.0.113.9"),
            ("x-real-ip", "203.0.113.9"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "evil.example"),
            ("forwarded", "for=1.2.3.4;proto=https;host=evil.example;secret=s3cret"),
        ]
    transport = _Transport(tls)
    request = Request(b"/ws", Header(pairs), "1.1", "GET", transport, app)  # type: ignore[arg-type]
    request.conn_info = ConnInfo(transport)  # type: ignore[arg-type]
    try:
        expected = normalize_origin(f"{request.scheme}://{request.host}")
    except Exception:  # noqa: BLE001 - what the slow path answers for a bad Host
        expected = None
    assert OriginPolicy((), allow_missing=True)._own_origin(request) == expected


def _origin_apps() -> list[Sanic[Any, Any]]:
    apps = []
    for n, proxy in enumerate(_PROXY_SETTINGS):
        app: Sanic[Any, Any] = Sanic(f"wsauth_origin_equivalence_{n}")
        app.config.update(proxy)
        apps.append(app)
    return apps


_ORIGIN_APPS = _origin_apps()


def test_own_origin_defers_to_an_apps_own_request_class_and_config() -> None:
    """An app's Request subclass (here pinning its host) and Config subclass
    (a proxy secret as a class attribute) are asked, not bypassed."""
    from sanic.compat import Header
    from sanic.config import Config
    from sanic.models.server_types import ConnInfo

    class PinnedRequest(Request):
        @property
        def host(self) -> str:
            return "chat.example.org"

    class ProxyConfig(Config):
        FORWARDED_SECRET = "s3cret"

    pinned: Sanic[Any, Any] = Sanic("wsauth_origin_pinned", request_class=PinnedRequest)
    proxied: Sanic[Any, Any] = Sanic("wsauth_origin_proxied", config=ProxyConfig())
    forwarded = ("forwarded", "for=1.2.3.4;proto=https;host=chat.example.org;secret=s3cret")
    policy = OriginPolicy((), allow_missing=True)
    for app, cls, headers in (
        (pinned, PinnedRequest, [("host", "evil.example")]),
        (proxied, Request, [("host", "evil.example"), forwarded]),
    ):
        transport = _Transport(False)
        request = cls(b"/ws", Header(headers), "1.1", "GET", transport, app)  # type: ignore[arg-type]
        request.conn_info = ConnInfo(transport)  # type: ignore[arg-type]
        expected = normalize_origin(f"{request.scheme}://{request.host}")
        assert expected is not None and "evil" not in expected
        assert policy._own_origin(request) == expected
