"""Sanic signals that make handshake outcomes observable.

``wsauth.ticket.rejected`` carries ``request`` and ``reason`` (the stable
error code); ``wsauth.ticket.accepted`` carries ``request`` and ``subject``.
Neither carries the ticket. Handlers run in a background task, so a slow
handler never delays a handshake, and nothing is dispatched at all while no
handler is registered.

.. code-block:: python

    @app.signal("wsauth.ticket.rejected")
    async def on_rejected(request, reason):
        metrics.increment(f"wsauth.rejected.{reason}")

Note that ``request.url`` (and ``request.args``) may still hold a ticket that
came in the query string: it is spent or invalid, but redact it before
logging it (:class:`sanic_wsauth.ext.TicketRedactor` does).
"""

from __future__ import annotations

from typing import Any

from sanic import Sanic

__all__ = ["TICKET_ACCEPTED", "TICKET_REJECTED", "notify"]

#: Dispatched for every refused handshake or in-band refresh.
TICKET_REJECTED = "wsauth.ticket.rejected"
#: Dispatched for every accepted handshake.
TICKET_ACCEPTED = "wsauth.ticket.accepted"


async def notify(app: Sanic[Any, Any], event: str, context: dict[str, Any]) -> None:
    """Dispatch ``event`` in the background if anyone listens for it."""
    # One dict lookup when nobody listens: the handshake's hot path.
    if event in app.signal_router.name_index:
        await app.dispatch(event, context=context, fail_not_found=False)
