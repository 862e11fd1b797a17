"""The handshake guard: request middleware that runs before the upgrade.

Sanic performs the WebSocket handshake (the 101) inside the route handler's
wrapper, after request middleware. Returning a response here therefore ends
the request as plain HTTP: no upgrade ever happens for a rejected client.
"""

from __future__ import annotations

import hmac
import logging
import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from multidict import istr
from sanic import HTTPResponse, Request
from websockets.exceptions import InvalidHeader
from websockets.headers import parse_connection, parse_subprotocol, parse_upgrade

from ..exceptions import (
    AudienceMismatch,
    BadHandshake,
    ContextUnusable,
    StoreUnavailable,
    SubjectMismatch,
    SubprotocolRequired,
    TicketReplayed,
    WSAuthError,
)
from ..tokens import Ticket, comparable_bytes
from . import asgi
from .headers import ORIGIN as _ORIGIN
from .headers import header_get as _get
from .headers import header_getall as _getall
from .policy import RoutePolicy, policy_for
from .responses import error_response
from .signals import TICKET_ACCEPTED, notify
from .transport import PROTOCOL_HEADER, extract_ticket

if TYPE_CHECKING:
    from .extension import WSAuth

__all__ = ["HandshakeGuard"]

logger = logging.getLogger("sanic_wsauth")


def _route_audience(request: Request, policy: RoutePolicy) -> str:
    # An app's audience callable that fails or returns junk refuses the
    # handshake (403) instead of surfacing as a 500.
    try:
        value = policy.audience_for(request)
    except Exception as exc:
        logger.error("sanic-wsauth: the route's audience callable raised %r", exc)
        raise AudienceMismatch("audience callable failed") from exc
    if not isinstance(value, str) or not value:
        logger.error("sanic-wsauth: the route's audience callable returned a non-string")
        raise AudienceMismatch("audience callable returned a non-string")
    return value


# Header names as multidict's case-insensitive strings: a lookup skips folding them.
_KEY = istr("sec-websocket-key")
_VERSION = istr("sec-websocket-version")
_UPGRADE = istr("upgrade")
_CONNECTION = istr("connection")
#: 16 bytes in base64: 22 characters of the alphabet, then "==".
_KEY_RE = re.compile(r"[A-Za-z0-9+/]{22}==")
_PROTOCOL = istr(PROTOCOL_HEADER)
_THIRTEEN = ["13"]


def _asks_upgrade(request: Request) -> bool:
    """Whether the request asks for a websocket (``Upgrade: websocket``)."""
    return "websocket" in _tokens(request.headers, _UPGRADE)


def _tokens(headers: Any, name: str) -> list[str]:
    """The comma-separated options of every ``name`` header, lower case."""
    return [
        token.strip().lower() for value in headers.getall(name, ()) for token in value.split(",")
    ]


def _valid_handshake(headers: Any) -> bool:
    """What websockets checks of a handshake request, before anything is spent.

    One ``Sec-WebSocket-Key`` of 16 bytes in base64, one
    ``Sec-WebSocket-Version: 13``, ``Upgrade`` naming ``websocket`` alone,
    ``upgrade`` among the ``Connection`` options, at most one ``Origin``, and
    every ``Upgrade``, ``Connection`` and ``Sec-WebSocket-Protocol`` value well
    formed. A request
    that fails these would pass the guard, spend its ticket, and then be
    refused by websockets (400 or 426). The lists are read with websockets'
    own parsers, so both agree; the spellings clients send skip them.
    """
    keys = _getall(headers, _KEY, ())
    if len(keys) != 1 or _KEY_RE.fullmatch(keys[0]) is None:
        return False
    if _getall(headers, _VERSION, ()) != _THIRTEEN:
        return False
    # Sanic hands websockets each header's first value once per occurrence.
    upgrade = _getall(headers, _UPGRADE, ())
    if len(upgrade) != 1:
        return False
    if upgrade[0] != "websocket":
        protocols = _parsed(upgrade[0], parse_upgrade)
        if protocols is None or len(protocols) != 1 or protocols[0].lower() != "websocket":
            return False
    connection = _get(headers, _CONNECTION)
    if connection is None:
        return False
    if connection != "Upgrade":  # what browsers and websockets' client send
        options = _parsed(connection, parse_connection)
        if options is None or not any(option.lower() == "upgrade" for option in options):
            return False
    if _ORIGIN in headers and len(_getall(headers, _ORIGIN)) > 1:
        return False  # websockets refuses several, even with the origin check off
    return _PROTOCOL not in headers or all(
        _parsed(value, parse_subprotocol) is not None for value in _getall(headers, _PROTOCOL)
    )


def _parsed(value: str, parse: Callable[[str], Sequence[str]]) -> Sequence[str] | None:
    """The items of a list header as websockets reads them; None where it refuses it."""
    try:
        return parse(value)
    except InvalidHeader:
        return None


def _offered(request: Request) -> set[str]:
    """The subprotocols the client offers (the ticket entry already removed).

    Several ``Sec-WebSocket-Protocol`` lines are joined into one first, as
    HTTP allows: Sanic hands websockets each header's first line once per
    line, so an offer on a later line would go unseen and websockets would
    refuse the handshake after the ticket was spent.
    """
    headers = request.headers
    values: list[str] = _getall(headers, _PROTOCOL, [])
    if len(values) > 1:
        del headers[_PROTOCOL]
        headers[_PROTOCOL] = ", ".join(values)
    return {item.strip() for value in values for item in value.split(",")}


class HandshakeGuard:
    """Verify the ticket of every protected websocket handshake.

    The accepted path is kept flat on purpose: every check but the replay
    claim is one synchronous call, and the claim is the only await. In a live
    server each handshake finds the CPU caches cold (the rest of Sanic and
    the websocket code ran in between), so every extra frame, coroutine and
    C routine costs several times what it costs in a loop.
    """

    def __init__(self, wsauth: WSAuth) -> None:
        self._wsauth = wsauth

    async def __call__(self, request: Request) -> HTTPResponse | None:
        route = request.route
        if route is None:
            return None
        # A websocket route; or any other route asked to upgrade: a route that
        # wraps a websocket handler (sanic-ext's automatic HEAD route does)
        # performs the handshake too, whatever its method.
        if not getattr(route.extra, "websocket", False):
            if not _asks_upgrade(request):
                return None
            if getattr(request.ctx, "ticket", None).__class__ is Ticket:
                # Accepted already. Behind ASGI, Sanic cannot send such a
                # route's HTTP response on the websocket scope, and runs
                # request middleware again for the same request from its
                # error handler: a second claim would count a replay.
                return None
        # policy_for()'s cache, read inline.
        policy = getattr(route.ctx, "wsauth_policy", None) or policy_for(route)
        if policy.public:
            return None
        wsauth = self._wsauth
        try:
            ticket = self.check(request, policy)
        except WSAuthError as exc:
            return await self._refuse(request, exc)
        try:
            # Before the claim: a request.ctx that cannot hold the ticket
            # (an app's own slotted context type) must not spend it.
            request.ctx.ticket = ticket
        except (AttributeError, TypeError):
            logger.error(
                "sanic-wsauth: request.ctx (%s) cannot hold the ticket; give the app's "
                "context type a 'ticket' attribute",
                type(request.ctx).__name__,
            )
            return await self._refuse(request, ContextUnusable())
        # self.claim(ticket), inline: one coroutine less per handshake.
        error: WSAuthError | None = None
        try:
            if not await wsauth._store.claim(ticket.jti, ticket.expires_at):  # type: ignore[union-attr]
                error = TicketReplayed()
        except StoreUnavailable as exc:
            error = exc
        except Exception as exc:  # noqa: BLE001 - any store fault fails closed
            error = StoreUnavailable()
            error.__cause__ = exc
        if error is not None:
            del request.ctx.ticket  # a refused request is not authenticated
            try:
                return await self._refuse(request, error)
            finally:
                # The error's traceback holds this frame: without this, the
                # frame and the error would keep each other (and the request,
                # ticket in its URL) alive until the collector ran.
                error = None
        wsauth.counters["accepted"] += 1
        if TICKET_ACCEPTED in request.app.signal_router.name_index:
            await notify(
                request.app, TICKET_ACCEPTED, {"request": request, "subject": ticket.subject}
            )
        return None

    async def _refuse(self, request: Request, exc: WSAuthError) -> HTTPResponse:
        await self._wsauth._observe_rejection(request, exc)
        if request.app.asgi:
            asgi.route_refusal(request)
        return error_response(exc)

    def check(self, request: Request, policy: RoutePolicy) -> Ticket:
        """Every handshake check but the replay claim: origin, ticket, route.

        Raises:
            WSAuthError: the first check that failed.
        """
        wsauth = self._wsauth
        config = wsauth._config or wsauth.config  # the property raises if unconfigured
        if wsauth.origin_policy is not None:
            wsauth.origin_policy.check(request)
        if request.app.state.asgi:
            # The ASGI server made (and checked) the handshake already, for a
            # websocket scope; a plain HTTP request cannot upgrade.
            if asgi.websocket_scope(request) is None:
                raise BadHandshake()
        elif not _valid_handshake(request.headers):
            raise BadHandshake()
        token = extract_ticket(
            request, query_param=config.query_param, prefix=config.subprotocol_prefix
        )
        if policy.subprotocols is not None and _offered(request).isdisjoint(policy.subprotocols):
            # websockets would refuse this handshake after the ticket was spent.
            raise SubprotocolRequired()
        return self.check_ticket(request, token, policy)

    def check_ticket(
        self,
        request: Request,
        token: object,
        policy: RoutePolicy,
        *,
        subject: str | None = None,
    ) -> Ticket:
        """Verify ``token`` for this request's route and client (no claim).

        Shared by the handshake and the in-band refresh, so both enforce the
        same signature, age, audience and IP checks; each then calls
        :meth:`claim`, the one-time use, only after this passed.

        Args:
            request: The handshake request (route audience, client address).
            token: The ticket as presented.
            policy: The route's policy.
            subject: When given, the ticket must name this subject (refresh).

        Raises:
            WSAuthError: signature, age, audience, IP or subject check failed.
        """
        wsauth = self._wsauth
        verifier = wsauth._verifier or wsauth.verifier
        # An app's own audience callable is asked every time: one that fails
        # refuses every handshake, bound ticket or not.
        audience = None if policy.audience is None else _route_audience(request, policy)
        ticket = verifier._verified(token)
        if ticket.audience is not None or ticket.client_ip is not None:
            # verify()'s binding checks. The route's path and the client
            # address (proxy headers parsed) are looked up only for a ticket
            # bound to them.
            verifier._check_bindings(
                ticket,
                (audience or policy.audience_for(request)) if ticket.audience is not None else None,
                request.client_ip if ticket.client_ip is not None else None,
            )
        if (wsauth._config or wsauth.config).require_audience and ticket.audience is None:
            raise AudienceMismatch("ticket has no audience")
        if subject is not None and not hmac.compare_digest(
            comparable_bytes(ticket.subject), comparable_bytes(subject)
        ):
            raise SubjectMismatch()
        return ticket

    async def claim(self, ticket: Ticket) -> None:
        """Spend ``ticket``: the last step, after every other check passed.

        Raises:
            TicketReplayed: it was used before.
            StoreUnavailable: the replay store failed (fails closed).
        """
        try:
            first_use = await self._wsauth.store.claim(ticket.jti, ticket.expires_at)
        except StoreUnavailable:
            raise
        except Exception as exc:  # noqa: BLE001 - any store fault fails closed
            raise StoreUnavailable() from exc
        if not first_use:
            raise TicketReplayed()
