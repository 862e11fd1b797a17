"""The handshake guard: request middleware that runs before the upgrade.

Sanic performs the WebSocket handshake (the 101) inside the route handler's
wrapper, after request middleware. Returning a response here therefore ends
the request as plain HTTP: no upgrade ever happens for a rejected client.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sanic import HTTPResponse, Request

from ..exceptions import AudienceMismatch, StoreUnavailable, TicketReplayed, WSAuthError
from ..tokens import Ticket
from .policy import RoutePolicy, policy_for
from .responses import error_response
from .transport import extract_ticket

if TYPE_CHECKING:
    from .extension import WSAuth

__all__ = ["HandshakeGuard"]


class HandshakeGuard:
    """Verify the ticket of every protected websocket handshake."""

    def __init__(self, wsauth: WSAuth) -> None:
        self._wsauth = wsauth

    async def __call__(self, request: Request) -> HTTPResponse | None:
        route = request.route
        if route is None or not route.extra.websocket:
            return None
        policy = policy_for(route)
        if policy.public:
            return None
        try:
            ticket = await self.authenticate(request, policy)
        except WSAuthError as exc:
            await self._wsauth._observe_rejection(request, exc)
            return error_response(exc)
        request.ctx.ticket = ticket
        await self._wsauth._observe_acceptance(request, ticket)
        return None

    async def authenticate(self, request: Request, policy: RoutePolicy) -> Ticket:
        """Run every check, the replay claim last, and return the ticket.

        Raises:
            WSAuthError: the first check that failed.
        """
        wsauth = self._wsauth
        config = wsauth.config
        if wsauth.origin_policy is not None:
            wsauth.origin_policy.check(request)
        token = extract_ticket(
            request, query_param=config.query_param, prefix=config.subprotocol_prefix
        )
        ticket = wsauth.verifier.verify(
            token, audience=policy.audience_for(request), client_ip=request.client_ip
        )
        if config.require_audience and ticket.audience is None:
            raise AudienceMismatch("ticket has no audience")
        try:
            first_use = await wsauth.store.claim(ticket.jti, ticket.expires_at)
        except StoreUnavailable:
            raise
        except Exception as exc:  # noqa: BLE001 - any store fault fails closed
            raise StoreUnavailable() from exc
        if not first_use:
            raise TicketReplayed()
        return ticket
