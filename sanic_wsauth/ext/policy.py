"""Per-route policy: which websocket routes need a ticket, and for what audience."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import unquote

from sanic import Request
from sanic.views import HTTPMethodView
from sanic_routing import Route

__all__ = ["AudienceSpec", "RoutePolicy", "audience", "policy_for", "public"]

F = TypeVar("F", bound=Callable[..., Any])
AudienceSpec = str | Callable[[Request], str]

_SLASH = re.compile("%2F", re.IGNORECASE)
_PUBLIC = "__wsauth_public__"
_AUDIENCE = "__wsauth_audience__"


def public(handler: F) -> F:
    """Mark a websocket handler as open to clients without a ticket."""
    setattr(handler, _PUBLIC, True)
    return handler


def audience(spec: AudienceSpec) -> Callable[[F], F]:
    """Declare the audience a ticket must carry (if it carries one) for a route.

    ``spec`` is a fixed string (a channel name) or a callable of the request
    (say, a room from the path). Without it, a route's audience is its path.
    """

    def decorate(handler: F) -> F:
        setattr(handler, _AUDIENCE, spec)
        return handler

    return decorate


@dataclass(frozen=True, slots=True)
class RoutePolicy:
    """What the guard enforces on one websocket route."""

    public: bool
    audience: AudienceSpec | None
    #: The route's own subprotocols (None: the route negotiates none).
    subprotocols: frozenset[str] | None = None

    def audience_for(self, request: Request) -> str:
        spec = self.audience
        if spec is None:
            path = request.path
            if "%" in path:
                path = _decoded_path(path)
            # Sanic routes "/ws/admin/" to "/ws/admin" (strict_slashes off):
            # one audience per route, so an authorize() that compares paths
            # cannot be sidestepped with a trailing slash.
            return path.rstrip("/") or "/"
        return spec if isinstance(spec, str) else spec(request)


def _decoded_path(path: str) -> str:
    """``path`` with its percent-escapes decoded, all but ``%2F`` and ``%25``.

    The handler sees ``/ws/room/%61dmin`` as room ``admin``; its audience must
    be ``/ws/room/admin`` too, or an ``authorize()`` that refuses that string
    could be sidestepped by spelling it differently. ``%2F`` stays encoded
    (upper case): decoded, it would make one path segment look like two. And
    a decoded ``%`` is written ``%25``, so that two paths the handler tells
    apart never share an audience: ``a%2Fb`` (room ``a/b``) stays ``a%2Fb``,
    ``a%252Fb`` (room ``a%2Fb``) becomes ``a%252Fb``, not ``a%2Fb``.
    """
    return "%2F".join(
        unquote(part, errors="surrogateescape").replace("%", "%25") for part in _SLASH.split(path)
    )


def _original_handler(route: Route) -> Any:
    # Sanic wraps websocket handlers in functools.partial(_websocket_handler, handler, ...).
    handler = route.handler
    args = getattr(handler, "args", ())
    return args[0] if args else handler


def _markers(route: Route, handler: Any) -> tuple[bool, AudienceSpec | None]:
    """The route's ``(public, audience)`` markers.

    A class-based view (``HTTPMethodView.as_view()``) on a websocket route
    answers the handshake with its ``get``: a marker on a ``get`` the class
    defines, on the class itself, or (through the class's ``decorators`` list)
    on the view function counts, most specific first. Nothing is inherited: a
    subclass of a public view is protected until it is marked itself.
    """
    public, spec = getattr(handler, _PUBLIC, False) is True, getattr(handler, _AUDIENCE, None)
    view_class = getattr(handler, "view_class", None)
    if not (
        getattr(route.extra, "websocket", False)
        and isinstance(view_class, type)
        and issubclass(view_class, HTTPMethodView)
    ):
        return public, spec
    get = vars(view_class).get("get")
    own: list[Mapping[str, Any]] = [
        getattr(get, "__dict__", {}),
        vars(view_class),
        {_PUBLIC: public, _AUDIENCE: spec},
    ]
    return (
        any(markers.get(_PUBLIC) is True for markers in own),
        next((markers[_AUDIENCE] for markers in own if markers.get(_AUDIENCE) is not None), None),
    )


def _route_subprotocols(route: Route) -> frozenset[str] | None:
    # The same partial carries the route's subprotocols=[...] as a keyword.
    keywords = getattr(route.handler, "keywords", None) or {}
    subprotocols = keywords.get("subprotocols")
    return frozenset(subprotocols) if subprotocols else None


def policy_for(route: Route) -> RoutePolicy:
    """Return (and cache on ``route.ctx``) the route's policy."""
    cached: RoutePolicy | None = getattr(route.ctx, "wsauth_policy", None)
    if cached is None:
        # Only the decorator: the README promises it is the one way to skip
        # the guard (a truthy route.ctx.wsauth_public used to count too).
        public, audience = _markers(route, _original_handler(route))
        cached = RoutePolicy(
            public=public,
            audience=audience,
            subprotocols=_route_subprotocols(route),
        )
        route.ctx.wsauth_policy = cached
    return cached
