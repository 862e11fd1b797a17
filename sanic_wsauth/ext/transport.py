"""Where a ticket travels: the query string, or ``Sec-WebSocket-Protocol``."""

from __future__ import annotations

from urllib.parse import parse_qsl

from multidict import istr
from sanic import Request

from ..exceptions import MalformedTicket, MissingTicket

__all__ = ["PROTOCOL_HEADER", "extract_ticket"]

PROTOCOL_HEADER = "sec-websocket-protocol"
# As multidict's case-insensitive string: a lookup skips folding the name.
_PROTOCOL = istr(PROTOCOL_HEADER)


def _take_protocol_ticket(request: Request, prefix: str) -> str | None:
    """Remove the ticket entry from the offered subprotocols and return it.

    The entry is deleted from the request headers before the handshake reads
    them, so the server never echoes the ticket back and the route's real
    subprotocols are negotiated as usual.
    """
    headers = request.headers
    values: list[str] = headers.getall(_PROTOCOL, [])
    if not values:
        return None
    offered = [item.strip() for value in values for item in value.split(",")]
    tickets = [item[len(prefix) :] for item in offered if item.startswith(prefix)]
    if not tickets:
        return None
    if len(tickets) > 1:
        raise MalformedTicket("more than one ticket offered")
    rest = [item for item in offered if item and not item.startswith(prefix)]
    del headers[PROTOCOL_HEADER]
    if rest:
        headers[PROTOCOL_HEADER] = ", ".join(rest)
    return tickets[0]


def _query_values(request: Request, name: str) -> list[str]:
    """Every non-empty value of ``name`` in the query string.

    What ``request.args.getlist(name)`` gives (the same ``parse_qsl`` call),
    without Sanic caching the parsed query on the request, which outlives the
    handshake; and with no parsing at all when the name cannot be there. (The
    usual ``token=<ticket>`` never gets here: extract_ticket reads it itself.)
    """
    query = request.query_string
    if not query or ("%" not in query and "+" not in query and name not in query):
        return []
    return [value for key, value in parse_qsl(query, errors="replace") if key == name]


def extract_ticket(request: Request, *, query_param: str, prefix: str) -> str:
    """Return the one ticket the request carries.

    Raises:
        MissingTicket: no ticket in the query string or the subprotocols.
        MalformedTicket: more than one ticket was presented.
    """
    from_protocol = _take_protocol_ticket(request, prefix) if _PROTOCOL in request.headers else None
    if from_protocol is None:
        query = request.query_string
        if "&" not in query and "%" not in query and "+" not in query:
            # One pair (or none) with nothing to decode: ``token=<ticket>``, the
            # usual handshake. What _query_values (parse_qsl) gives, unparsed.
            key, _, value = query.partition("=")
            if value and key == query_param:
                return value
            raise MissingTicket()
    from_query = _query_values(request, query_param)
    if len(from_query) > 1 or (from_query and from_protocol is not None):
        raise MalformedTicket("more than one ticket presented")
    ticket = from_protocol if from_protocol is not None else (from_query or [""])[0]
    if not ticket:
        raise MissingTicket()
    return ticket
