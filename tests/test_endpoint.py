"""The ticket endpoint, in process with sanic-testing's client."""

from __future__ import annotations

import asyncio
import secrets
import warnings
from typing import Any

import pytest
from sanic import Request, Sanic

from sanic_wsauth import Identity, TicketVerifier, WSAuth
from sanic_wsauth.tokens import decode_unverified


def bearer_auth(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    return header.removeprefix("Bearer ") if header.startswith("Bearer user-") else None


def new_app(name: str) -> Sanic[Any, Any]:
    app: Sanic[Any, Any] = Sanic(name)
    # Sanic just put its own deprecation filter first; sanic-testing's client
    # registers a listener with Sanic 25's deprecated signature (not ours).
    warnings.filterwarnings(
        "ignore",
        message=r".*listener 'SanicTestClient\._run_request'",
        category=DeprecationWarning,
    )
    return app


def make_app(name: str, secret: str, **options: Any) -> Sanic[Any, Any]:
    app = new_app(name)
    options.setdefault("authenticate", bearer_auth)
    WSAuth(app, secret_keys=secret, **options)
    return app


def test_credentials_buy_a_ticket(app_name: str, secret: str) -> None:
    app = make_app(app_name, secret)
    _, response = app.test_client.post(
        "/authenticate/token", headers={"Authorization": "Bearer user-7"}
    )
    assert response.status == 200
    assert response.headers["cache-control"] == "no-store"
    assert response.json["expires_in"] == 30
    ticket = TicketVerifier(secret).verify(response.json["token"])
    assert ticket.subject == "user-7"


def test_no_credentials_get_401_with_challenge(app_name: str, secret: str) -> None:
    app = make_app(app_name, secret)
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic x"}):
        _, response = app.test_client.post("/authenticate/token", headers=headers)
        assert response.status == 401
        assert response.json == {"error": "unauthenticated"}
        assert response.headers["www-authenticate"].startswith("Bearer")


def test_only_post_is_served(app_name: str, secret: str) -> None:
    app = make_app(app_name, secret)
    _, response = app.test_client.get("/authenticate/token")
    assert response.status == 405


def test_async_authenticate_with_claims(app_name: str, secret: str) -> None:
    async def authenticate(request: Request) -> tuple[str, dict[str, Any]]:
        await asyncio.sleep(0)
        return "u1", {"role": "admin"}

    app = make_app(app_name, secret, authenticate=authenticate)
    _, response = app.test_client.post("/authenticate/token")
    ticket = TicketVerifier(secret).verify(response.json["token"])
    assert (ticket.subject, dict(ticket.claims)) == ("u1", {"role": "admin"})


def test_identity_result(app_name: str, secret: str) -> None:
    app = make_app(app_name, secret, authenticate=lambda r: Identity("u2", {"t": 1}))
    _, response = app.test_client.post("/authenticate/token")
    payload, _ = decode_unverified(response.json["token"])
    assert payload["sub"] == "u2" and payload["ext"] == {"t": 1}


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"params": {"audience": "/ws/chat"}}, "/ws/chat"),
        ({"json": {"audience": "/ws/chat"}}, "/ws/chat"),
        ({"data": {"audience": "/ws/chat"}}, "/ws/chat"),
        # multipart/form-data: a field, beside a file the endpoint ignores.
        ({"data": {"audience": "/ws/chat"}, "files": {"f": ("f.txt", b"x")}}, "/ws/chat"),
        # A field whose value spells the audience's header is not the audience.
        ({"data": {"note": 'name="audience"'}, "files": {"f": ("f.txt", b"x")}}, None),
        # Other JSON fields are the app's (its authenticate may read them).
        ({"json": {"device": "phone"}}, None),
        ({}, None),
    ],
)
def test_audience_parameter(
    app_name: str, secret: str, kwargs: dict[str, Any], expected: str | None
) -> None:
    app = make_app(app_name, secret)
    _, response = app.test_client.post(
        "/authenticate/token", headers={"Authorization": "Bearer user-1"}, **kwargs
    )
    assert response.status == 200, response.body
    payload, _ = decode_unverified(response.json["token"])
    assert payload.get("aud") == expected


@pytest.mark.parametrize(
    "content_type",
    ["application/json", "Application/JSON; charset=utf-8", "application/vnd.api+json"],
)
def test_a_json_audience_is_read_whatever_the_spelling_of_its_type(
    app_name: str, secret: str, content_type: str
) -> None:
    app = make_app(app_name, secret)
    _, response = app.test_client.post(
        "/authenticate/token",
        headers={"Authorization": "Bearer user-1", "content-type": content_type},
        content=b'{"audience": "/ws/x"}',
    )
    assert response.status == 200
    payload, _ = decode_unverified(response.json["token"])
    assert payload["aud"] == "/ws/x"


_FORM = "application/x-www-form-urlencoded"
_MULTIPART = b'--xyz\r\nContent-Disposition: form-data; name="audience"\r\n\r\n/ws/x\r\n--xyz--\r\n'
_BOUNDARY = {"content-type": "multipart/form-data; boundary=xyz"}
_BAD_CHARSET = b"\r\nContent-Type: text/plain; charset=no-such-charset\r\n\r\n"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"content": b"{not json", "headers": {"content-type": "application/json"}},
        {"json": {"audience": 5}},
        {"json": {"audience": ""}},
        {"json": {"audience": "x" * 300}},
        {"params": [("audience", "a"), ("audience", "b")]},
        # Nesting deep enough that json.loads raises RecursionError, not ValueError.
        {"content": b"[" * 100_000, "headers": {"content-type": "application/json"}},
        # A lone surrogate, which JSON can escape and no ticket can hold.
        {"content": b'{"audience": "\\ud800"}', "headers": {"content-type": "application/json"}},
        # A body the endpoint cannot read: not an unbound ticket instead.
        {"content": b'{"audience": "/ws/x"}', "headers": {"content-type": "text/plain"}},
        {"content": b"audience=/ws/x", "headers": {}},
        # Blank values count (Sanic's request.args and .form drop them).
        {"params": {"audience": ""}},
        {"content": b"audience=", "headers": {"content-type": _FORM}},
        # Only whitespace is blank too.
        {"json": {"audience": " "}},
        {"params": {"audience": "\t"}},
        {"content": b"audience=%E3%80%80", "headers": {"content-type": _FORM}},  # U+3000
        # A body that may hold an audience and cannot be read: never unbound.
        {"content": _MULTIPART, "headers": {"content-type": "multipart/form-data"}},
        {"content": _MULTIPART.replace(b"\r\n\r\n", _BAD_CHARSET), "headers": _BOUNDARY},
        {"content": _MULTIPART.removesuffix(b"--xyz--\r\n"), "headers": _BOUNDARY},
        {"content": _MULTIPART.replace(b"\r\n", b"\n"), "headers": _BOUNDARY},
        # Malformed in ways a search for the field's header missed.
        {
            "content": _MULTIPART.replace(b"name=", b"NAME=").removesuffix(b"\r\n--xyz--\r\n"),
            "headers": _BOUNDARY,
        },
        {
            "content": _MULTIPART.replace(b'name="audience"', b"name*=utf-8''audience"),
            "headers": _BOUNDARY,
        },
        {"content": b"audience=%2Fws\xff", "headers": {"content-type": _FORM}},
        {"files": {"audience": ("a.txt", b"/ws/x")}},
        {"json": [{"audience": "/ws/x"}]},
        {"params": {"audience": "/ws/a"}, "json": {"audience": "/ws/b"}},
    ],
    ids=[
        "not-json",
        "not-a-string",
        "empty",
        "too-long",
        "twice",
        "deep",
        "surrogate",
        "text-plain",
        "no-type",
        "blank-query",
        "blank-form",
        "space-json",
        "tab-query",
        "ideographic-space-form",
        "multipart-no-boundary",
        "multipart-bad-charset",
        "multipart-unclosed",
        "multipart-bare-lf",
        "multipart-upper-case-unclosed",
        "multipart-name-star",
        "form-not-utf8",
        "as-a-file",
        "json-array",
        "query-and-body",
    ],
)
def test_bad_audience_requests_get_400(app_name: str, secret: str, kwargs: dict[str, Any]) -> None:
    app = make_app(app_name, secret)
    headers = {"Authorization": "Bearer user-1", **kwargs.pop("headers", {})}
    _, response = app.test_client.post("/authenticate/token", headers=headers, **kwargs)
    assert response.status == 400
    assert response.json == {"error": "bad_request"}


@pytest.mark.parametrize(
    ("target", "kwargs"),
    [
        # Not UTF-8: read leniently, %FF and %FE would both be "/ws/\ufffd".
        ("/authenticate/token?audience=/ws/%FF", {}),
        (
            "/authenticate/token",
            {"content": b"audience=/ws/%FE", "headers": {"content-type": _FORM}},
        ),
        # A duplicate JSON key: json.loads would keep the last.
        (
            "/authenticate/token",
            {
                "content": b'{"audience": "/ws/a", "audience": "/ws/b"}',
                "headers": {"content-type": "application/json"},
            },
        ),
        # The boundary inside a value: Sanic's request.form would read an
        # audience there that the endpoint, reading by RFC 2046, would not.
        (
            "/authenticate/token",
            {"content": _MULTIPART.replace(b"/ws/x", b"/ws/x--xyz"), "headers": _BOUNDARY},
        ),
    ],
    ids=["query-not-utf8", "form-not-utf8", "json-twice", "boundary-in-a-value"],
)
def test_audiences_that_cannot_be_read_exactly_get_400(
    app_name: str, secret: str, target: str, kwargs: dict[str, Any]
) -> None:
    app = make_app(app_name, secret)
    headers = {"Authorization": "Bearer user-1", **kwargs.pop("headers", {})}
    _, response = app.test_client.post(target, headers=headers, **kwargs)
    assert (response.status, response.json) == (400, {"error": "bad_request"})


def test_authorize_callback_guards_audiences(app_name: str, secret: str) -> None:
    seen: list[tuple[str, str]] = []

    async def authorize(request: Request, identity: Identity, audience: str) -> bool:
        seen.append((identity.subject, audience))
        return audience != "/ws/admin"

    app = make_app(app_name, secret, authorize=authorize)
    headers = {"Authorization": "Bearer user-3"}
    _, ok = app.test_client.post("/authenticate/token?audience=/ws/chat", headers=headers)
    _, denied = app.test_client.post("/authenticate/token?audience=/ws/admin", headers=headers)
    assert ok.status == 200
    assert denied.status == 403 and denied.json == {"error": "audience_forbidden"}
    assert seen == [("user-3", "/ws/chat"), ("user-3", "/ws/admin")]


def test_path_and_max_age_are_configurable(app_name: str, secret: str) -> None:
    app = make_app(app_name, secret, token_path="/api/ws-ticket", max_age=12)
    headers = {"Authorization": "Bearer user-1"}
    _, response = app.test_client.post("/api/ws-ticket", headers=headers)
    assert response.status == 200 and response.json["expires_in"] == 12
    app.test_client.port = None  # type: ignore[attr-defined]
    _, missing = app.test_client.post("/authenticate/token", headers=headers)
    assert missing.status == 404


def test_no_authenticate_means_no_endpoint(app_name: str, secret: str) -> None:
    app = new_app(app_name)
    WSAuth(app, secret_keys=secret)

    @app.get("/")
    async def index(request: Request) -> Any:  # Sanic cannot route an app with no routes
        from sanic.response import empty

        return empty()

    _, response = app.test_client.post("/authenticate/token")
    assert response.status == 404


def test_ip_binding_binds_the_callers_address(app_name: str, secret: str) -> None:
    app = make_app(app_name, secret, bind_ip=True)
    _, response = app.test_client.post(
        "/authenticate/token", headers={"Authorization": "Bearer user-1"}
    )
    payload, _ = decode_unverified(response.json["token"])
    assert payload["ip"] == "127.0.0.1"


@pytest.mark.parametrize(
    "authenticate",
    [
        lambda r: 42,  # not a known shape
        lambda r: ("u1", {"when": object()}),  # claims that are not JSON
        lambda r: "",  # a subject no ticket can hold
        lambda r: "x" * 10_000,
        lambda r: "user-\ud800-sekrit",  # a lone surrogate: not encodable
    ],
    ids=["shape", "claims", "empty-subject", "huge-subject", "surrogate-subject"],
)
def test_an_unusable_identity_fails_closed(
    app_name: str, secret: str, authenticate: Any, caplog: pytest.LogCaptureFixture
) -> None:
    app = make_app(app_name, secret, authenticate=authenticate)
    _, response = app.test_client.post("/authenticate/token")
    assert response.status == 503
    assert response.json == {"error": "authenticator_failed"}
    assert b"Traceback" not in response.body
    assert any(r.name == "sanic_wsauth" and r.levelname == "ERROR" for r in caplog.records)


def test_an_unusable_identity_is_logged_by_exception_type_only(
    app_name: str, secret: str, caplog: pytest.LogCaptureFixture
) -> None:
    app = make_app(app_name, secret, authenticate=lambda r: "user-\ud800-sekrit")
    _, response = app.test_client.post("/authenticate/token")
    assert response.status == 503 and response.json == {"error": "authenticator_failed"}
    logged = "\n".join(r.getMessage() for r in caplog.records if r.name == "sanic_wsauth")
    assert "UnicodeEncodeError" in logged
    # Not the exception's text, which quotes what it could not encode.
    assert "surrogates not allowed" not in logged and "sekrit" not in logged


def test_claims_too_large_for_any_ticket_are_503_not_a_useless_ticket(
    app_name: str, secret: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A ticket over WSAUTH_MAX_TOKEN_BYTES would be refused at every
    handshake (401 too_large): the endpoint refuses to mint it instead."""
    claims = {"blob": secrets.token_urlsafe(6000)}  # random: compression cannot shrink it
    app = make_app(app_name, secret, authenticate=lambda r: ("u1", claims))
    _, response = app.test_client.post("/authenticate/token")
    assert response.status == 503 and response.json == {"error": "authenticator_failed"}
    assert any("ValueError" in r.getMessage() for r in caplog.records if r.name == "sanic_wsauth")
    roomy = make_app(f"{app_name}_roomy", secret, authenticate=lambda r: ("u1", claims))
    roomy.config.WSAUTH_MAX_TOKEN_BYTES = 65536
    _, response = roomy.test_client.post("/authenticate/token")
    assert response.status == 200
    ticket = TicketVerifier(secret, max_token_bytes=65536).verify(response.json["token"])
    assert dict(ticket.claims) == claims


def test_authenticate_that_raises_fails_closed_without_leaking(
    app_name: str, secret: str, caplog: pytest.LogCaptureFixture
) -> None:
    async def authenticate(request: Request) -> str | None:
        raise RuntimeError(f"db down while checking {request.headers['authorization']}")

    app = make_app(app_name, secret, authenticate=authenticate)
    _, response = app.test_client.post(
        "/authenticate/token", headers={"Authorization": "Bearer sekrit-credential"}
    )
    assert response.status == 503
    assert response.json == {"error": "authenticator_failed"}
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "authenticate() raised RuntimeError" in logged
    assert "sekrit-credential" not in logged  # the exception text may hold credentials
    assert "sekrit-credential" not in response.body.decode()


def test_authenticate_may_raise_its_own_http_errors(app_name: str, secret: str) -> None:
    from sanic.exceptions import Forbidden

    def authenticate(request: Request) -> str | None:
        raise Forbidden("account locked")

    app = make_app(app_name, secret, authenticate=authenticate)
    _, response = app.test_client.post("/authenticate/token")
    assert response.status == 403  # the app's own answer passes through


def test_authorize_that_raises_denies(app_name: str, secret: str) -> None:
    def authorize(request: Request, identity: Identity, audience: str) -> bool:
        raise KeyError(audience)

    app = make_app(app_name, secret, authorize=authorize)
    _, response = app.test_client.post(
        "/authenticate/token?audience=/ws/chat", headers={"Authorization": "Bearer user-1"}
    )
    assert response.status == 403
    assert response.json == {"error": "audience_forbidden"}


def test_an_unparsable_form_is_refused_without_a_traceback(
    app_name: str, secret: str, caplog: pytest.LogCaptureFixture
) -> None:
    app = make_app(app_name, secret)
    _, response = app.test_client.post(
        "/authenticate/token",
        headers={"Authorization": "Bearer user-1", "content-type": "multipart/form-data"},
        content=_MULTIPART,
    )
    assert response.status == 400
    assert not [r for r in caplog.records if r.exc_info or "parsing form" in r.getMessage()]
