"""Property: no input that the issuer did not mint opens a socket or causes a 5xx.

Runs hypothesis against the real demo server (a subprocess) with the real
websockets client.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from ._support import post_token, run_demo

KNOWN_REASONS = {
    "missing",
    "malformed",
    "too_large",
    "bad_signature",
    "expired",
    "not_yet_valid",
    "replayed",
    "origin_forbidden",
}
API_KEY = "property-api-key"


@pytest.fixture(scope="module")
def demo() -> Iterator[str]:
    with run_demo(env={"WSAUTH_DEMO_API_KEY": API_KEY}) as (_, port):
        yield f"127.0.0.1:{port}"


@pytest.fixture(scope="module")
def real_ticket(demo: str) -> str:
    status, body, _ = post_token(f"http://{demo}", api_key=API_KEY)
    assert status == 200
    token: str = body["token"]
    return token


def refused(demo: str, token: str) -> tuple[int, str]:
    try:
        with connect(f"ws://{demo}/ws?token={quote(token, safe='')}", open_timeout=10) as ws:
            ws.close()
            return 101, "accepted"
    except InvalidStatus as exc:
        body = json.loads(exc.response.body or b"{}")
        return exc.response.status_code, str(body.get("error"))


def _mutate(token: str, data: st.DataObject) -> str:
    kind = data.draw(st.sampled_from(["flip", "insert", "delete", "truncate", "swap", "append"]))
    if kind == "truncate":
        return token[: data.draw(st.integers(0, len(token) - 1))]
    if kind == "swap":
        parts = token.split(".")
        perm = data.draw(st.permutations(parts))
        return ".".join(perm)
    if kind == "append":
        return token + data.draw(st.text(min_size=1, max_size=8))
    index = data.draw(st.integers(0, len(token) - 1))
    if kind == "delete":
        return token[:index] + token[index + 1 :]
    char = data.draw(st.characters(codec="utf-8"))
    if kind == "insert":
        return token[:index] + char + token[index:]
    return token[:index] + char + token[index + 1 :]


@settings(
    max_examples=250,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_mutated_tickets_never_open_a_socket(
    demo: str, real_ticket: str, data: st.DataObject
) -> None:
    mutated = _mutate(real_ticket, data)
    if mutated == real_ticket:
        mutated += "x"
    status, reason = refused(demo, mutated)
    assert status in (401, 403), (status, reason)
    assert reason in KNOWN_REASONS


@settings(max_examples=150, deadline=None)
@given(token=st.one_of(st.text(max_size=300), st.binary(max_size=300).map(lambda b: b.hex())))
def test_arbitrary_strings_never_open_a_socket(demo: str, token: str) -> None:
    status, reason = refused(demo, token)
    assert status in (401, 403), (status, reason)
    assert reason in KNOWN_REASONS
