"""Sanic behind an ASGI server (uvicorn, hypercorn): refusals and closes.

Two gaps in Sanic's ASGI layer matter to an authenticating guard:

- A response returned for a websocket scope is sent as ``http.response.*``,
  which ASGI servers refuse for that scope (uvicorn answers the client with a
  500). :func:`route_refusal` translates it into the ``websocket.http.response``
  extension when the server offers it (the client gets our 4xx and JSON body),
  and otherwise into ``websocket.close``, which the server turns into a 403.
- Sanic's ASGI ``WebSocketConnection.close()`` does nothing; :func:`close`
  sends ``websocket.close`` with the code and reason itself.
- Sanic's ASGI connection info never reports TLS (``request.conn_info.ssl``
  is False), so ``request.scheme`` says ``ws``/``http`` behind a TLS-serving
  ASGI server; :func:`scope_is_secure` reads what the server itself reports.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from sanic import Request

__all__ = ["close", "route_refusal", "scope_is_secure", "websocket_scope"]

_Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
_EXTENSION = "websocket.http.response"
#: Policy violation: the close an ASGI server turns into a plain 403.
_POLICY_VIOLATION = 1008


def _scope(request: Request) -> MutableMapping[str, Any] | None:
    """The ASGI scope of ``request``; None for Sanic's own server."""
    scope = getattr(request.transport, "scope", None)
    return scope if isinstance(scope, MutableMapping) else None


def websocket_scope(request: Request) -> MutableMapping[str, Any] | None:
    """Return the ASGI scope if ``request`` is a websocket under ASGI, else None."""
    scope = _scope(request)
    return scope if scope is not None and scope.get("type") == "websocket" else None


def scope_is_secure(request: Request) -> bool:
    """Whether the ASGI server reports ``request`` as made over TLS.

    The scope's ``scheme`` (``wss``/``https``): TLS on the connection, or the
    proxy headers the server was told to trust (uvicorn's ``--proxy-headers``).
    False for Sanic's own server (no scope).
    """
    scope = _scope(request)
    return scope is not None and scope.get("scheme") in ("wss", "https")


def route_refusal(request: Request) -> None:
    """Let the HTTP refusal Sanic is about to send reach an ASGI websocket client.

    A no-op for Sanic's own server, where the refusal is plain HTTP already.
    """
    scope = websocket_scope(request)
    if scope is None:
        return
    transport: Any = request.transport
    send: _Send = transport.send
    extensions = scope.get("extensions") or {}
    if _EXTENSION in extensions:

        async def translated(message: MutableMapping[str, Any]) -> None:
            kind = message.get("type")
            if kind in ("http.response.start", "http.response.body"):
                message = {**message, "type": f"websocket.{kind}"}
            await send(message)

    else:
        closed = False

        async def translated(message: MutableMapping[str, Any]) -> None:
            nonlocal closed
            if str(message.get("type", "")).startswith("http.response."):
                if not closed:
                    closed = True
                    await send({"type": "websocket.close", "code": _POLICY_VIOLATION})
                return
            await send(message)

    # Sanic's ASGI app sends through ``transport.send``: shadow it for this
    # request only.
    transport.send = translated


async def close(request: Request, code: int, reason: str) -> None:
    """Close an accepted ASGI websocket with ``code`` and ``reason``."""
    transport: Any = request.transport
    await transport.send({"type": "websocket.close", "code": code, "reason": reason})
