"""The ticket endpoint: trade the app's usual credentials for a ticket."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sanic import HTTPResponse, Request
from sanic.exceptions import SanicException
from sanic.headers import parse_content_header
from sanic.response import json as json_response

from ..tokens import MAX_AUDIENCE_CHARS, MAX_SUBJECT_CHARS, normalize_ip
from .body import body_values
from .responses import error_response

if TYPE_CHECKING:
    from .extension import WSAuth

__all__ = ["AuthenticateResult", "Authenticate", "Authorize", "Identity", "TicketEndpoint"]


@dataclass(frozen=True, slots=True)
class Identity:
    """Who ``authenticate`` says the caller is, with optional ticket claims."""

    subject: str
    claims: Mapping[str, Any] = field(default_factory=dict)


AuthenticateResult = Identity | str | tuple[str, Mapping[str, Any]] | None
Authenticate = Callable[[Request], "AuthenticateResult | Awaitable[AuthenticateResult]"]
Authorize = Callable[[Request, Identity, str], "bool | Awaitable[bool]"]

logger = logging.getLogger("sanic_wsauth")

_BAD_REQUEST = "bad_request"
#: 503 reason when the app's ``authenticate`` raises, returns an unknown
#: shape, or returns a subject or claims that cannot go into a ticket.
AUTHENTICATOR_FAILED = "authenticator_failed"


class _CallbackFailed(Exception):
    """An application callback failed; the endpoint answers without a 500."""


async def _call(func: Callable[..., Any], *args: Any) -> Any:
    result = func(*args)
    if inspect.isawaitable(result):
        result = await result
    return result


async def _guarded(name: str, func: Callable[..., Any], *args: Any) -> Any:
    """Call an app callback; its own :class:`SanicException` passes through.

    Any other exception is logged by type only (its text may hold the
    caller's credentials) and becomes :class:`_CallbackFailed`, so the
    endpoint fails closed with a short answer instead of a 500.
    """
    try:
        return await _call(func, *args)
    except SanicException:
        raise
    except Exception as exc:  # noqa: BLE001 - fail closed, never a 500
        logger.error("sanic-wsauth: %s() raised %s", name, type(exc).__name__)
        raise _CallbackFailed from None


def _as_identity(result: AuthenticateResult) -> Identity | None:
    if result is None or isinstance(result, Identity):
        return result
    if isinstance(result, str):
        return Identity(result)
    if isinstance(result, tuple) and len(result) == 2:
        return Identity(result[0], result[1])
    raise TypeError(
        "authenticate() must return None, a subject string, (subject, claims) or an Identity"
    )


def _requested_audience(request: Request, param: str) -> str | None:
    """Read the audience from the query string and a JSON or form body.

    Fails closed: anything that may carry an audience this cannot read (a
    body of another type or malformed, a JSON body that is not an object, an
    audience sent as a file, a blank or repeated value) is a ValueError (400),
    never an unbound ticket, which would grant more than was asked.
    """
    # errors="strict": a percent-escape that is not UTF-8 is refused, not read as U+FFFD.
    query = request.get_args(keep_blank_values=True, errors="strict")
    values: list[Any] = query.getlist(param) if param in query else []
    if request.body:
        media_type, options = parse_content_header(request.headers.get("content-type", ""))
        values += body_values(media_type, options, request.body, param)
    if not values:
        return None
    if len(values) > 1 or not isinstance(values[0], str):
        raise ValueError("one audience string expected")
    if not 0 < len(values[0]) <= MAX_AUDIENCE_CHARS:
        raise ValueError("audience length out of range")
    if values[0].isspace():  # blank too: no route is named " "
        raise ValueError("blank audience")
    # A lone surrogate (JSON can escape one) cannot go into a ticket:
    # UnicodeEncodeError is a ValueError, so the answer is 400.
    values[0].encode("utf-8")
    return values[0]


class TicketEndpoint:
    """``POST <token_path>``: 200 ``{"token", "expires_in"}`` or 401/403."""

    def __init__(
        self, wsauth: WSAuth, authenticate: Authenticate, authorize: Authorize | None
    ) -> None:
        self._wsauth = wsauth
        self._authenticate = authenticate
        self._authorize = authorize

    async def __call__(self, request: Request) -> HTTPResponse:
        config = self._wsauth.config
        try:
            wanted = _requested_audience(request, config.audience_param)
        except ValueError:
            return error_response(_BAD_REQUEST, 400)
        try:
            identity = _as_identity(await _guarded("authenticate", self._authenticate, request))
        except _CallbackFailed:
            return error_response(AUTHENTICATOR_FAILED, 503)
        except TypeError as exc:
            logger.error("sanic-wsauth: %s", exc)
            return error_response(AUTHENTICATOR_FAILED, 503)
        if identity is None:
            return error_response("unauthenticated", 401)
        if wanted is not None and self._authorize is not None:
            try:
                allowed = await _guarded("authorize", self._authorize, request, identity, wanted)
            except _CallbackFailed:
                allowed = False
            if not allowed:
                return error_response("audience_forbidden", 403)
        client_ip = None
        if config.bind_ip:
            try:
                client_ip = normalize_ip(request.client_ip)
            except ValueError:
                return error_response("no_client_ip", 400)
        try:
            token = self._wsauth.issuer.issue(
                identity.subject, audience=wanted, client_ip=client_ip, claims=identity.claims
            )
        except (TypeError, ValueError) as exc:
            # A subject or claims from authenticate() that no ticket can hold.
            # Logged by type only: the text may quote them.
            logger.error(
                "sanic-wsauth: authenticate() gave an identity no ticket can hold (%s): "
                "the subject must be a string of 1 to %d characters, the claims JSON, "
                "and the ticket at most WSAUTH_MAX_TOKEN_BYTES (%d)",
                type(exc).__name__,
                MAX_SUBJECT_CHARS,
                config.max_token_bytes,
            )
            return error_response(AUTHENTICATOR_FAILED, 503)
        body: dict[str, Any] = {"token": token, "expires_in": config.max_age}
        if config.max_connection_age > 0:
            # The client's schedule: reconnect or refresh before the cap.
            age = config.max_connection_age
            body["max_connection_age"] = int(age) if age.is_integer() else age
            body["refresh"] = config.refresh
        return json_response(body, headers={"Cache-Control": "no-store", "Pragma": "no-cache"})
