"""Fuzzing: the verifier and a live server accept only what the issuer minted.

Thousands of inputs built from real tickets: flipped and inserted characters,
swapped and spliced segments, padding, whitespace and unicode look-alikes,
percent-encoding, huge sizes, tickets re-signed with other keys, salts,
digests and key derivations, compressed-payload bombs, and arbitrary JSON
payloads signed with the real key. Properties:

- nothing is accepted unless it is, character for character, a minted ticket;
- every refusal is a :class:`WSAuthError` with a known reason (the verifier)
  or a 4xx ``{"error": reason}`` (the server): never another exception, never
  a 5xx.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import re
import string
import time
import zlib
from collections import Counter
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from itsdangerous import URLSafeSerializer, URLSafeTimedSerializer
from itsdangerous.encoding import base64_encode
from sanic import Request, Sanic
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from sanic_wsauth import SALT, TicketIssuer, TicketVerifier, WSAuth, WSAuthError
from sanic_wsauth.tokens import MAX_PAYLOAD_BYTES, decode_unverified, stock_serializer

from ._raw import raw_upgrade
from ._support import new_secret, serve

SECRET = new_secret()
OTHER = new_secret()
NOW = 1_800_000_000.0

#: Every reason a refused ticket may carry.
KNOWN = {
    "missing",
    "malformed",
    "too_large",
    "bad_signature",
    "expired",
    "not_yet_valid",
    "replayed",
    "audience_mismatch",
    "ip_mismatch",
    "origin_forbidden",
    "subject_mismatch",
    # A fuzzed ticket offered as a subprotocol that is not an HTTP token: a
    # Sec-WebSocket-Protocol list websockets cannot parse, refused before verify.
    "bad_handshake",
}

#: RFC 7230's token: what websockets accepts as one subprotocol.
_HTTP_TOKEN = re.compile(r"[-!#$%&'*+.^_`|~0-9a-zA-Z]+")

ISSUER = TicketIssuer(SECRET, clock=lambda: NOW)
VERIFIER = TicketVerifier([OTHER, SECRET], clock=lambda: NOW + 3)

SEEDS = [
    ISSUER.issue("alice"),
    ISSUER.issue("bob", audience="/ws"),
    ISSUER.issue("carol", client_ip="127.0.0.1"),
    ISSUER.issue("dave", claims={"role": "admin", "n": 1}),
    ISSUER.issue("erin", claims={"roles": ["reader"] * 80}),  # compressed (".eJ")
    ISSUER.issue("ü" * 40, audience="room:ä"),
]
MINTED = set(SEEDS)

B64 = string.ascii_letters + string.digits + "-_"
ODD = "=+/.% \t\n\r\x00\x7f~!\"',;:&?#[]\\é\u200b\u00a0\ufeffｅＪ𝐞\ud800"
LOOKALIKE = {c: chr(0xFF21 + ord(c) - ord("A")) for c in string.ascii_uppercase} | {
    c: chr(0xFF41 + ord(c) - ord("a")) for c in string.ascii_lowercase
}


def _check(token: object) -> str:
    """Verify ``token``; return "accepted" or the reason. Anything else fails."""
    try:
        ticket = VERIFIER.verify(token, audience="/ws", client_ip="127.0.0.1")
    except WSAuthError as exc:
        assert exc.reason in KNOWN, exc.reason
        return exc.reason
    assert token in MINTED, f"accepted something never minted: {token!r}"
    assert ticket.jti
    return "accepted"


# -- mutations (shared by the hypothesis campaign and the live one) ----------------------

Mutation = Callable[[str, random.Random], str]


def _at(token: str, rnd: random.Random) -> int:
    return rnd.randrange(len(token)) if token else 0


def flip(token: str, rnd: random.Random) -> str:
    i = _at(token, rnd)
    return token[:i] + rnd.choice(B64 + ODD) + token[i + 1 :]


def bitflip(token: str, rnd: random.Random) -> str:
    i = _at(token, rnd)
    if not token:
        return token
    return token[:i] + chr(ord(token[i]) ^ (1 << rnd.randrange(7))) + token[i + 1 :]


def insert(token: str, rnd: random.Random) -> str:
    i = _at(token, rnd)
    return token[:i] + rnd.choice(B64 + ODD) * rnd.randint(1, 3) + token[i:]


def delete(token: str, rnd: random.Random) -> str:
    i = _at(token, rnd)
    return token[:i] + token[i + rnd.randint(1, 4) :]


def truncate(token: str, rnd: random.Random) -> str:
    return token[: _at(token, rnd)]


def swap_segments(token: str, rnd: random.Random) -> str:
    parts = token.split(".")
    rnd.shuffle(parts)
    return ".".join(parts)


def splice(token: str, rnd: random.Random) -> str:
    other = rnd.choice(SEEDS).rsplit(".", 2)
    mine = token.rsplit(".", 2)
    if len(mine) != 3 or len(other) != 3:
        return token + "." + rnd.choice(SEEDS)
    which = rnd.randrange(3)
    mine[which] = other[which]
    return ".".join(mine)


def pad(token: str, rnd: random.Random) -> str:
    parts = token.split(".")
    i = rnd.randrange(len(parts))
    parts[i] += "=" * rnd.randint(1, 3)
    return ".".join(parts)


def case(token: str, rnd: random.Random) -> str:
    i = _at(token, rnd)
    return token[:i] + token[i : i + 1].swapcase() + token[i + 1 :]


def lookalike(token: str, rnd: random.Random) -> str:
    i = _at(token, rnd)
    c = token[i : i + 1]
    return token[:i] + LOOKALIKE.get(c, "\u0301") + token[i + 1 :]


def whitespace(token: str, rnd: random.Random) -> str:
    return rnd.choice([" ", "\t", "\n", "\u3000", "\x00"]).join(
        [token, ""] if rnd.random() < 0.5 else ["", token]
    )


def percent(token: str, rnd: random.Random) -> str:
    i = _at(token, rnd)
    return token[:i] + quote(token[i : i + 1], safe="") if token else token


def huge(token: str, rnd: random.Random) -> str:
    return token + rnd.choice(B64) * rnd.choice([3000, 5000, 70000])


def dots(token: str, rnd: random.Random) -> str:
    return rnd.choice([".", "..", ""]) + token.replace(".", rnd.choice([".", "..", ". "]), 1)


MUTATIONS: list[Mutation] = [
    flip,
    bitflip,
    insert,
    delete,
    truncate,
    swap_segments,
    splice,
    pad,
    case,
    lookalike,
    whitespace,
    percent,
    huge,
    dots,
]


def mutate(token: str, rnd: random.Random, rounds: int) -> str:
    for _ in range(rounds):
        token = rnd.choice(MUTATIONS)(token, rnd)
    return token


# -- re-signed tickets ------------------------------------------------------------------


def _payload(token: str) -> dict[str, Any]:
    data: dict[str, Any] = decode_unverified(token)[0]
    return data


def resigned(rnd: random.Random) -> str:
    """A ticket for a real payload, signed by anything but the issuer."""
    source = rnd.choice(SEEDS[:4])
    payload = _payload(source)
    kind = rnd.randrange(8)
    if kind == 0:
        return TicketIssuer(new_secret(), clock=lambda: NOW).sign_payload(payload)
    if kind == 1:
        salt = rnd.choice(["", "sanic-wsauth ", "Sanic-wsauth", "itsdangerous", "x" * 50])
        return TicketIssuer(SECRET, salt=salt, clock=lambda: NOW).sign_payload(payload)
    if kind == 2:  # stock defaults: SHA-1
        return URLSafeTimedSerializer(SECRET, salt=SALT).dumps(payload)
    if kind == 3:
        derivation = rnd.choice(["django-concat", "concat", "none"])
        return URLSafeTimedSerializer(
            SECRET,
            salt=SALT,
            signer_kwargs={"digest_method": hashlib.sha256, "key_derivation": derivation},
        ).dumps(payload)
    if kind == 4:
        return URLSafeTimedSerializer(
            SECRET, salt=SALT, signer_kwargs={"digest_method": hashlib.sha512}
        ).dumps(payload)
    if kind == 5:  # untimed: two segments
        return URLSafeSerializer(
            SECRET, salt=SALT, signer_kwargs={"digest_method": hashlib.sha256}
        ).dumps(payload)
    if kind == 6:  # the signature of another ticket
        body = base64_encode(json.dumps(payload, separators=(",", ":")).encode()).decode()
        stamp = rnd.choice([seed for seed in SEEDS if seed != source]).rsplit(".", 2)
        return f"{body}.{stamp[1]}.{stamp[2]}"
    # The right key as a salt, the salt as a key: confusions.
    return TicketIssuer(SECRET + "x", salt=SALT, clock=lambda: NOW).sign_payload(payload)


# -- the verifier: hypothesis --------------------------------------------------------------

FUZZ = settings(
    max_examples=1500,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@FUZZ
@given(seed=st.sampled_from(SEEDS), rnd=st.randoms(use_true_random=False), rounds=st.integers(1, 4))
def test_mutated_tickets(seed: str, rnd: random.Random, rounds: int) -> None:
    token = mutate(seed, rnd, rounds)
    outcome = _check(token)
    if token != seed:
        assert outcome != "accepted"


@settings(max_examples=600, deadline=None, derandomize=True, database=None)
@given(rnd=st.randoms(use_true_random=False))
def test_resigned_tickets(rnd: random.Random) -> None:
    token = resigned(rnd)
    assert _check(token) in ("bad_signature", "malformed")


@FUZZ
@given(token=st.text(max_size=300) | st.binary(max_size=300) | st.none() | st.integers())
def test_arbitrary_input(token: Any) -> None:
    assert _check(token) != "accepted"


JSON = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=True) | st.integers() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
FIELDS = st.fixed_dictionaries(
    {},
    optional={
        "jti": st.sampled_from(["0" * 32, "a" * 31, "g" * 32, "A" * 32]) | JSON,
        "sub": st.text(max_size=300) | JSON,
        "aud": st.sampled_from(["/ws", "/other", ""]) | JSON,
        "ip": st.sampled_from(["127.0.0.1", "::ffff:127.0.0.1", "[::1]", "300.1.1.1"]) | JSON,
        "ext": JSON,
    },
)


@FUZZ
@given(payload=FIELDS | JSON)
def test_payloads_signed_with_the_real_key(payload: Any) -> None:
    """Minted (so possibly accepted), but a bad payload is only ever "malformed"."""
    token = ISSUER.sign_payload(payload)
    try:
        VERIFIER.verify(token, audience="/ws", client_ip="127.0.0.1")
    except WSAuthError as exc:
        assert exc.reason in {"malformed", "audience_mismatch", "ip_mismatch", "too_large"}


#: Text that may hold lone surrogates, which JSON can carry as ``\\ud800`` escapes
#: (another issuer's ``JSON.stringify`` writes them so) and a strict encode refuses.
ANY_TEXT = st.text(st.characters(exclude_categories=()), max_size=6)


@FUZZ
@given(sub=ANY_TEXT, aud=ANY_TEXT, route=st.sampled_from(["/ws", "\ud800", "/ws\udcff"]))
def test_lone_surrogates_signed_by_another_issuer(sub: str, aud: str, route: str) -> None:
    payload = {"jti": "0" * 32, "sub": sub or "s", "aud": aud or route}
    token = _signed_segment(base64_encode(json.dumps(payload).encode()))  # ASCII escapes
    try:
        ticket = STRICT.verify(token, audience=route)
    except WSAuthError as exc:
        assert exc.reason == "audience_mismatch", exc.reason
        assert payload["aud"] != route
    else:
        assert ticket.audience == route == payload["aud"] and ticket.subject == payload["sub"]


def _signed_segment(segment: bytes) -> str:
    """Sign any payload segment with the real key (now), as the issuer would."""
    from itsdangerous import TimestampSigner

    signer = TimestampSigner(SECRET, salt=SALT, digest_method=hashlib.sha256, key_derivation="hmac")
    return signer.sign(segment).decode()


#: Real clock; the default size cap, and one so large that only inflation limits.
STRICT = TicketVerifier(SECRET)
ROOMY = TicketVerifier(SECRET, max_token_bytes=10**7)


@pytest.mark.parametrize("size", [MAX_PAYLOAD_BYTES + 1, 10**6, 10**8])
def test_compressed_bombs(size: int) -> None:
    body = b'{"jti":"' + b"0" * 32 + b'","sub":"' + b"a" * size + b'"}'
    token = _signed_segment(b"." + base64_encode(zlib.compress(body, 9)))
    for verifier in (STRICT, ROOMY):
        started = time.monotonic()
        with pytest.raises(WSAuthError) as caught:
            verifier.verify(token)
        # Refused by size before decoding, or inflation stopped at the cap.
        assert caught.value.reason == "too_large"
        assert time.monotonic() - started < 30  # liveness only


@pytest.mark.parametrize(
    "segment",
    [
        b"." + base64_encode(b"not zlib at all"),
        b"." + base64_encode(zlib.compress(b"[1, 2, 3]")),
        b"." + base64_encode(zlib.compress(b"[" * 100_000 + b"]" * 100_000)),
        base64_encode(b"[" * 5000),
        base64_encode(b'{"jti": "' + b"\xff\xfe" + b'"}'),
        base64_encode(b'{"\xed\xa0\x80": 1}'),
        base64_encode('{"sub": "\ud800"}'.encode("utf-8", "surrogatepass")),
        base64_encode(b'{"jti":"' + b"0" * 32 + b'","sub":"a"}  '),
        base64_encode(b'{"jti":"' + b"0" * 32 + b'","sub":"a"}{}'),
        base64_encode(b'{"a":1e999999}'),
        base64_encode(b'{"a":' + b"9" * 5000 + b"}"),
        b"",
    ],
)
def test_odd_payloads_signed_with_the_real_key(segment: bytes) -> None:
    token = _signed_segment(segment)
    for verifier in (STRICT, ROOMY):
        try:
            verifier.verify(token)
        except WSAuthError as exc:
            assert exc.reason in {"malformed", "too_large", "expired"}, exc.reason


_PLAIN = b'{"jti":"' + b"0" * 32 + b'","sub":"a"}'
#: The subject "a" and U+D800 encoded as if it were a character: not UTF-8.
_SURROGATE_SUB = b'"a\xed\xa0\x80"'


def _sync_flushed(body: bytes, level: int = 9) -> bytes:
    """A zlib stream of ``body`` with no final block and no checksum (truncated)."""
    compressor = zlib.compressobj(level)
    return compressor.compress(body) + compressor.flush(zlib.Z_SYNC_FLUSH)


@pytest.mark.parametrize(
    ("segment", "reason"),
    [
        # Not UTF-8: encoded surrogates; or another encoding json.loads(bytes) would sniff.
        (base64_encode(_PLAIN.replace(b'"a"', _SURROGATE_SUB)), "malformed"),
        (base64_encode(b"\xef\xbb\xbf" + _PLAIN), "malformed"),
        (base64_encode(_PLAIN.decode().encode("utf-16-le")), "malformed"),
        (base64_encode(_PLAIN.decode().encode("utf-32")), "malformed"),
        (b"." + base64_encode(zlib.compress(_PLAIN.replace(b'"a"', _SURROGATE_SUB))), "malformed"),
        # Truncated zlib streams: no checksum; no final block.
        (b"." + base64_encode(zlib.compress(_PLAIN)[:-4]), "malformed"),
        (b"." + base64_encode(_sync_flushed(_PLAIN)), "malformed"),
        # A truncated stream that inflates past the cap, its prefix valid JSON.
        (b"." + base64_encode(_sync_flushed(_PLAIN + b" " * MAX_PAYLOAD_BYTES, 1)), "too_large"),
    ],
    ids=[
        "surrogate-bytes",
        "bom",
        "utf-16",
        "utf-32",
        "compressed-surrogates",
        "no-checksum",
        "no-final-block",
        "past-the-cap",
    ],
)
def test_payloads_stock_itsdangerous_refuses_are_refused(segment: bytes, reason: str) -> None:
    """Signed with the real key, so only the payload decides: stock
    itsdangerous refuses each (BadPayload), and so must we."""
    from itsdangerous import BadPayload

    token = _signed_segment(segment)
    with pytest.raises(BadPayload):
        stock_serializer(SECRET, salt=SALT).loads(token, max_age=35)
    with pytest.raises(WSAuthError) as caught:
        ROOMY.verify(token)
    assert caught.value.reason == reason


# -- a live server ---------------------------------------------------------------------------


def _live_corpus(n: int) -> list[str]:
    rnd = random.Random(20261129)
    corpus = []
    for i in range(n):
        if i % 10 == 0:
            corpus.append(resigned(rnd))
        else:
            corpus.append(mutate(rnd.choice(SEEDS), rnd, rnd.randint(1, 3)))
    return [token for token in corpus if token not in MINTED]


async def test_live_server(app_name: str) -> None:
    app: Sanic[Any, Any] = Sanic(app_name)
    app.config.WEBSOCKET_PING_INTERVAL = None
    wsauth = WSAuth(
        app, secret_keys=[OTHER, SECRET], bind_ip=True, max_connection_age=60, refresh=True
    )

    @app.websocket("/ws")
    async def echo(request: Request, ws: Any) -> None:
        async for message in ws:
            await ws.send(message)

    app.add_websocket_route(echo, "/chat", name="chat", subprotocols=["chat.v1"])

    statuses: Counter[int] = Counter()
    reasons: Counter[str] = Counter()
    corpus = _live_corpus(1500)
    assert len(corpus) > 1300

    async with serve(app) as srv:
        semaphore = asyncio.Semaphore(16)

        async def attempt(index: int, token: str) -> None:
            headers: list[tuple[str, str]] = []
            target = f"/ws?token={quote(token.encode('utf-8', 'surrogatepass'), safe='')}"
            header_safe = token.isascii() and token.isprintable() and "," not in token
            if index % 3 == 0 and header_safe and token.strip() == token and token:
                target = "/chat"
                headers = [("Sec-WebSocket-Protocol", f"wsauth.ticket.{token}, chat.v1")]
            async with semaphore:
                response = await raw_upgrade(srv.port, target, headers)
            statuses[response.status] += 1
            assert response.status < 500, (token, response.status)
            assert response.status != 101, f"accepted a forgery: {token!r}"
            if response.status == 413:  # Sanic's own header cap, before any of ours
                return
            body = response.json()
            assert set(body) == {"error"} and body["error"] in KNOWN, body
            if response.status == 400:  # only a subprotocol entry that is no HTTP token
                assert body["error"] == "bad_handshake" and headers, (token, body)
                assert _HTTP_TOKEN.fullmatch(f"wsauth.ticket.{token}") is None, token
            reasons[body["error"]] += 1

        await asyncio.gather(*(attempt(i, t) for i, t in enumerate(corpus)))

        # Refresh frames on live sockets: forgeries close with 4003, never extend.
        rnd = random.Random(7)
        for token in corpus[:60]:
            fresh = wsauth.issue("alice")
            async with connect(f"{srv.ws}/ws?token={fresh}") as ws:
                frame = json.dumps({"type": "wsauth.refresh", "token": mutate(token, rnd, 1)})
                await ws.send(frame)
                with pytest.raises(ConnectionClosed) as closed:
                    await asyncio.wait_for(ws.recv(), 10)
                assert closed.value.rcvd is not None
                assert closed.value.rcvd.code == 4003
                assert closed.value.rcvd.reason in KNOWN

        # The harness can accept: genuine tickets from the same server pass.
        for path, protocols in (("/ws", None), ("/chat", ["wsauth.ticket.{}", "chat.v1"])):
            token = wsauth.issue("alice", client_ip="127.0.0.1")
            offered = [p.format(token) for p in protocols] if protocols else None
            url = f"{srv.ws}{path}" + ("" if protocols else f"?token={token}")
            async with connect(url, subprotocols=offered) as ws:  # type: ignore[arg-type]
                await ws.send("x")
                assert await ws.recv() == "x"

    assert set(statuses) <= {400, 401, 403, 413}, statuses
    assert sum(statuses.values()) == len(corpus)
    assert wsauth.counters["accepted"] == 2 + 60
    assert {"bad_signature", "malformed", "too_large"} <= set(reasons), reasons


@pytest.mark.parametrize(
    ("target", "headers"),
    [
        (b"/ws?token=%FF%FE%FD", []),
        (b"/ws?token=%C3%A4%C3%B6", []),
        ("/ws?token=äöü".encode(), []),
        (b"/ws?token=%00", []),
        (b"/ws?token=%ZZ", []),
        (b"/ws?token", []),
        (b"/ws?token=a&token=b", []),
        (b"/ws?" + b"x=1&" * 1500, []),
        (b"/ws?token=" + b"A" * 7000, []),
        (b"/ws", [("Sec-WebSocket-Protocol", "wsauth.ticket." + "\udcff" * 10)]),
        (b"/ws", [("Sec-WebSocket-Protocol", "wsauth.ticket.a" * 200)]),
        (b"/ws", [("Sec-WebSocket-Protocol", ",,,,")]),
        (b"/ws", [("Origin", "https://a.example"), ("Origin", "https://b.example")]),
        (b"/ws", [("Origin", "\udce4\udcf6")]),
        (b"/ws", [("X-Big", "y" * 20000)]),
        (b"/ws", [(f"X-H{i}", "z" * 100) for i in range(200)]),
        (b"/ws", [("X-Forwarded-For", "1.2.3.4, ::1, junk")]),
    ],
)
async def test_edge_requests_get_a_clear_4xx(
    app_name: str, target: bytes, headers: list[tuple[str, str]]
) -> None:
    app: Sanic[Any, Any] = Sanic(app_name)
    WSAuth(app, secret_keys=SECRET, bind_ip=True)
    app.config.PROXIES_COUNT = 1

    @app.websocket("/ws")
    async def echo(request: Request, ws: Any) -> None:
        await ws.send("x")

    async with serve(app) as srv:
        response = await raw_upgrade(srv.port, "", headers, raw_target=target)
    assert 400 <= response.status < 500, response.status
    if response.body.startswith(b"{"):
        body = response.json()
        assert set(body) == {"error"} and body["error"] in KNOWN, body
