"""The short JSON answers sent to rejected clients."""

from __future__ import annotations

from sanic import HTTPResponse
from sanic.response import json

from ..exceptions import WSAuthError

__all__ = ["error_response"]

_NO_STORE = {"Cache-Control": "no-store"}


def error_response(error: WSAuthError | str, status: int | None = None) -> HTTPResponse:
    """Build ``{"error": reason}`` with the error's status; never more detail."""
    reason = error if isinstance(error, str) else error.reason
    code = status if status is not None else (error.status if not isinstance(error, str) else 400)
    headers = dict(_NO_STORE)
    if code == 401:
        headers["WWW-Authenticate"] = f'Bearer realm="wsauth", error="{reason}"'
    return json({"error": reason}, status=code, headers=headers)
