"""Reading the ticket from the query string: the same values Sanic's own parsing gives."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st
from sanic import Request, Sanic
from sanic.compat import Header

from sanic_wsauth.exceptions import MalformedTicket, MissingTicket
from sanic_wsauth.ext.transport import _query_values, extract_ticket

_app: Sanic[Any, Any] = Sanic("wsauth_transport_property")


def _request(query: str) -> Request:
    target = f"/ws?{query}".encode()
    return Request(target, Header({"host": "127.0.0.1"}), "1.1", "GET", None, _app)  # type: ignore[arg-type]


# Query strings built from the characters that matter to the parser.
queries = st.text(alphabet="token=&%+;2aF0é ~.-_", max_size=40) | st.builds(
    lambda pairs: "&".join(pairs),
    st.lists(st.sampled_from(["token=abc", "token=", "token", "=x", "x=1", "tok%65n=v", "a+b=c"])),
)


#: Spellings worth trying every time, whatever hypothesis draws.
EDGE_QUERIES = (
    "token=abc",
    "token=a=b",
    "token",
    "token=",
    "=token",
    "=abc",
    "",
    "tokens=abc",
    "xtoken=abc",
    "token=a;token=b",
    "token=a&token=b",
    "tok%65n=abc",
    "token=a+b",
)


def with_edge_queries(test: Callable[[str], None]) -> Callable[[str], None]:
    for query in EDGE_QUERIES:
        test = example(query=query)(test)
    return test


@settings(max_examples=1500, deadline=None)
@given(query=queries)
@with_edge_queries
def test_query_values_match_sanic_args(query: str) -> None:
    try:
        request = _request(query)
        expected = request.args.getlist("token")  # Sanic's parse_qsl, a fresh request
    except Exception:  # noqa: BLE001 - not a URL httptools accepts: not a request
        assume(False)
    assert _query_values(_request(query), "token") == expected


@pytest.mark.parametrize(
    ("query", "values"),
    [
        ("token=abc", ["abc"]),
        ("token=a=b", ["a=b"]),
        ("token=", []),
        ("tokens=abc", []),
        ("token=a&token=b", ["a", "b"]),
        ("tok%65n=abc", ["abc"]),
        ("token=a+b", ["a b"]),
        ("", []),
    ],
)
def test_query_values(query: str, values: list[str]) -> None:
    assert _query_values(_request(query), "token") == values


def _reference_ticket(query: str) -> str | type[Exception]:
    """What extract_ticket must answer for a query string alone (no subprotocol):
    built from _query_values, the general path."""
    values = _query_values(_request(query), "token")
    if len(values) > 1:
        return MalformedTicket
    return values[0] if values and values[0] else MissingTicket


@settings(max_examples=1500, deadline=None)
@given(query=queries)
@with_edge_queries
def test_extract_ticket_reads_the_query_string_as_the_general_path_does(query: str) -> None:
    """The one-pair shortcut in extract_ticket gives the general path's answer."""
    try:
        request = _request(query)
    except Exception:  # noqa: BLE001 - not a URL httptools accepts: not a request
        assume(False)
    expected = _reference_ticket(query)
    if isinstance(expected, str):
        assert extract_ticket(request, query_param="token", prefix="wsauth.ticket.") == expected
    else:
        with pytest.raises(expected):
            extract_ticket(request, query_param="token", prefix="wsauth.ticket.")
