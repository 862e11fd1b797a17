"""Issue sanic-wsauth tickets from a Flask app, with no Sanic in the process.

The WebSocket server (Sanic with ``WSAuth``) and this Flask app share one
secret and nothing else: no cache, no database, no call between them. The
browser asks Flask for a ticket, then opens the socket on the Sanic server::

    POST /ws-ticket  (Authorization: Bearer <api key>, optional JSON {"audience": "/chat"})
    -> 200 {"token": "...", "expires_in": 30}   (Cache-Control: no-store)
    -> 401 {"error": "unauthorized"}
    -> 400 {"error": "bad_audience"}  (an unusable audience, or a body that is not a JSON object)

    new WebSocket(`wss://ws.example.com/chat?token=${token}`)

Only :mod:`sanic_wsauth.tokens` is imported (stdlib + itsdangerous). Replace
the bearer-key lookup with your own login (``flask_login.current_user``, a
session, ...). Run it with::

    WSAUTH_SECRET="$(sanic-wsauth secret)" DEMO_API_KEY=... python examples/flask_issuer.py
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Mapping

from flask import Flask, Response, jsonify, request

from sanic_wsauth.tokens import MAX_AUDIENCE_CHARS, TicketIssuer

__all__ = ["create_app"]


def _usable_audience(value: object) -> bool:
    """A string of 1 to 256 characters that UTF-8 can hold (JSON can escape a
    lone surrogate, which no ticket can carry)."""
    if not isinstance(value, str) or not 0 < len(value) <= MAX_AUDIENCE_CHARS:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def create_app(
    secret: str,
    api_keys: Mapping[str, str],
    *,
    max_age: int = 30,
    bind_ip: bool = False,
) -> Flask:
    """Build a Flask app with a ``POST /ws-ticket`` endpoint.

    Args:
        secret: The Sanic server's ``WSAUTH_SECRET`` (at least 32 bytes).
        api_keys: Bearer key -> user id; stands in for your real login.
        max_age: Reported as ``expires_in``; the Sanic server's own
            ``WSAUTH_MAX_AGE`` decides how long the ticket lives.
        bind_ip: Bind each ticket to the caller's address. Only when Flask and
            Sanic see the same client address (same proxy setup).

    Raises:
        WeakSecretError: the secret is missing or shorter than 32 bytes.
    """
    issuer = TicketIssuer(secret, max_age=max_age)  # refuses a weak secret at start-up
    keys = [(key.encode(), user) for key, user in api_keys.items()]
    app = Flask(__name__)

    def current_user() -> str | None:
        scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not presented:
            return None
        found = None
        for key, user in keys:  # compare with every key, in constant time
            if hmac.compare_digest(presented.strip().encode(), key):
                found = user
        return found

    def refuse(reason: str, status: int) -> tuple[Response, int]:
        return jsonify(error=reason), status

    @app.post("/ws-ticket")
    def ws_ticket() -> Response | tuple[Response, int]:
        user = current_user()
        if user is None:
            return refuse("unauthorized", 401)
        # Fail closed: a body that may ask for an audience and cannot be read
        # is refused, never answered with an unbound ticket (which would
        # grant more than was asked).
        # The audience comes in a JSON body only: one asked for in the query
        # (as the Sanic endpoint allows) is refused rather than ignored, and
        # so is a present but null one.
        if "audience" in request.args:
            return refuse("bad_audience", 400)
        body = request.get_json(silent=True) if request.get_data() else {}
        if not isinstance(body, dict):
            return refuse("bad_audience", 400)
        audience = body.get("audience")
        if "audience" in body and not _usable_audience(audience):
            return refuse("bad_audience", 400)
        client_ip = request.remote_addr if bind_ip else None
        token = issuer.issue(user, audience=audience, client_ip=client_ip)
        response = jsonify(token=token, expires_in=issuer.max_age)
        response.headers["Cache-Control"] = "no-store"  # a ticket is a credential
        return response

    return app


if __name__ == "__main__":
    api_key = os.environ.get("DEMO_API_KEY", "")
    if not api_key:
        raise SystemExit("set DEMO_API_KEY (the bearer key of the demo user) and WSAUTH_SECRET")
    create_app(os.environ.get("WSAUTH_SECRET", ""), {api_key: "demo"}).run(port=5000)
