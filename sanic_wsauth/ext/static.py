"""Serve the browser client, ``static/wsauth.js``, at ``WSAUTH_STATIC_PATH``.

Off by default (``static_path=None``). When set, ``GET``/``HEAD`` on that path
answer the packaged ES module as ``text/javascript; charset=utf-8`` with an
``ETag`` (``If-None-Match`` gives 304) and a short public cache lifetime: the
module has no version in its URL, so clients revalidate within minutes of an
upgrade of the server.
"""

from __future__ import annotations

import hashlib
from importlib import resources
from typing import Any

from sanic import HTTPResponse, Request, Sanic
from sanic.response import raw

__all__ = [
    "CACHE_CONTROL",
    "CLIENT_FILE",
    "CONTENT_TYPE",
    "StaticClient",
    "client_source",
    "register_static",
]

#: The packaged client, under ``sanic_wsauth/static/``.
CLIENT_FILE = "wsauth.js"
CONTENT_TYPE = "text/javascript; charset=utf-8"
CACHE_CONTROL = "public, max-age=300"


def client_source() -> bytes:
    """Return the bytes of the packaged browser client."""
    return resources.files("sanic_wsauth").joinpath("static").joinpath(CLIENT_FILE).read_bytes()


def _etag_matches(header: str | None, etag: str) -> bool:
    if not header:
        return False
    for candidate in header.split(","):
        candidate = candidate.strip()
        if candidate == "*" or candidate.removeprefix("W/") == etag:
            return True
    return False


class StaticClient:
    """Route handler answering one in-memory file with validators."""

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.etag = f'"{hashlib.sha256(body).hexdigest()[:32]}"'

    async def __call__(self, request: Request) -> HTTPResponse:
        headers = {
            "ETag": self.etag,
            "Cache-Control": CACHE_CONTROL,
            "X-Content-Type-Options": "nosniff",
        }
        if _etag_matches(request.headers.get("if-none-match"), self.etag):
            return HTTPResponse(status=304, headers=headers)
        return raw(self.body, content_type=CONTENT_TYPE, headers=headers)


def register_static(app: Sanic[Any, Any], path: str, *, name: str = "wsauth_static") -> None:
    """Serve the browser client at ``path`` (read once, now).

    Raises:
        OSError: the packaged file is missing (a broken installation).
    """
    app.add_route(StaticClient(client_source()), path, methods=["GET", "HEAD"], name=name)
