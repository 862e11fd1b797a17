"""The ticket core, with no Sanic: issue, verify, rotation, interop, limits."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import subprocess
import sys
import zlib
from base64 import urlsafe_b64encode
from collections.abc import Callable
from dataclasses import FrozenInstanceError

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from itsdangerous import SignatureExpired, URLSafeTimedSerializer
from itsdangerous.timed import TimestampSigner

from sanic_wsauth import exceptions as exc
from sanic_wsauth import tokens
from sanic_wsauth.tokens import (
    COMPRESS_MIN_BYTES,
    DEFAULT_MAX_TOKEN_BYTES,
    SALT,
    Ticket,
    TicketIssuer,
    TicketVerifier,
    decode_unverified,
    normalize_ip,
    stock_serializer,
)

NOW = 1_800_000_000.0


class Clock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def frozen_stock(secret: str | list[str], at: float, salt: str = SALT) -> URLSafeTimedSerializer:
    class FrozenSigner(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(at)

    keys = secret if isinstance(secret, list) else [secret]
    return URLSafeTimedSerializer(
        keys,
        salt=salt,
        signer=FrozenSigner,
        signer_kwargs={"digest_method": hashlib.sha256, "key_derivation": "hmac"},
    )


def test_client_ip_may_be_a_function_called_only_for_bound_tickets(secret: str) -> None:
    clock = Clock()
    issuer, verifier = TicketIssuer(secret, clock=clock), TicketVerifier(secret, clock=clock)
    calls: list[int] = []

    def address(value: str | None) -> Callable[[], str | None]:
        def lookup() -> str | None:
            calls.append(1)
            return value

        return lookup

    # Unbound: the (costly) lookup is never made.
    assert verifier.verify(issuer.issue("a"), client_ip=address("10.0.0.1")).subject == "a"
    assert calls == []
    bound = issuer.issue("a", client_ip="10.0.0.1")
    assert verifier.verify(bound, client_ip=address("10.0.0.1")).client_ip == "10.0.0.1"
    for other in ("10.0.0.2", None, ""):
        with pytest.raises(exc.IPMismatch):
            verifier.verify(bound, client_ip=address(other))
    assert len(calls) == 4


def test_audience_may_be_a_function_called_only_for_bound_tickets(secret: str) -> None:
    clock = Clock()
    issuer, verifier = TicketIssuer(secret, clock=clock), TicketVerifier(secret, clock=clock)
    calls: list[str | None] = []

    def route(value: str | None) -> Callable[[], str | None]:
        def lookup() -> str | None:
            calls.append(value)
            return value

        return lookup

    # Unbound: the route's audience is never worked out.
    assert verifier.verify(issuer.issue("a"), audience=route("/ws")).subject == "a"
    assert calls == []
    bound = issuer.issue("a", audience="/ws")
    assert verifier.verify(bound, audience=route("/ws")).audience == "/ws"
    for other in ("/ws/admin", None, ""):
        with pytest.raises(exc.AudienceMismatch):
            verifier.verify(bound, audience=route(other))
    assert calls == ["/ws", "/ws/admin", None, ""]


def test_verified_tickets_are_real_frozen_tickets(secret: str) -> None:
    """verify() builds Ticket objects without Ticket's __init__: the same thing."""
    clock = Clock()
    issuer, verifier = TicketIssuer(secret, clock=clock), TicketVerifier(secret, clock=clock)
    expires_at = int(NOW) + verifier.max_age + verifier.leeway
    for ticket, audience in (
        (verifier.verify(issuer.issue("alice")), None),
        (verifier.verify(issuer.issue("alice", audience="/ws"), audience="/ws"), "/ws"),
    ):
        assert type(ticket) is Ticket
        expected = Ticket(ticket.jti, "alice", int(NOW), expires_at, audience, None)
        assert ticket == expected and repr(ticket) == repr(expected)
        with pytest.raises(FrozenInstanceError):
            ticket.subject = "mallory"  # type: ignore[misc]
        with pytest.raises(FrozenInstanceError):
            del ticket.subject  # type: ignore[misc]
        with pytest.raises(FrozenInstanceError):
            ticket.extra = 1  # type: ignore[attr-defined]
        assert ticket.subject == "alice"
    assert tokens._TicketDraft.__slots__ == Ticket.__slots__


@pytest.mark.parametrize(
    ("subject", "plain"),
    [
        ("bench-user", True),
        ("~ !#$%&'()*+,-./09:;<=>?@AZ[]^_`az{|}", True),  # every ASCII punctuation but " and \
        ('say "hi"', False),
        ("back\\slash", False),
        ("del\x7f", False),
        ("tab\there", False),
        ("Zo\u00eb", True),  # not ASCII: the string-operation reader
        ("Zo\u00eb\x7f", False),
        ("\u2028", False),
    ],
)
def test_plain_payload_reader_boundaries(subject: str, plain: bool) -> None:
    text = _ENCODE({"jti": "0123456789abcdef" * 2, "sub": subject})
    expected = ("0123456789abcdef" * 2, subject) if plain else None
    assert tokens._plain_ticket(text) == expected
    # Whatever reader answers, verify() agrees with the JSON scanner.
    issuer, verifier = TicketIssuer("k" * 32), TicketVerifier("k" * 32)
    assert verifier.verify(issuer.issue(subject)).subject == subject


def test_tickets_without_claims_get_an_empty_read_only_view(secret: str) -> None:
    clock = Clock()
    issuer, verifier = TicketIssuer(secret, clock=clock), TicketVerifier(secret, clock=clock)
    plain = [verifier.verify(issuer.issue("a")) for _ in range(2)]
    rich = verifier.verify(issuer.issue("a", claims={"role": "admin"}))
    for ticket in plain:
        assert dict(ticket.claims) == {} and len(ticket.claims) == 0
        with pytest.raises(TypeError):
            ticket.claims["role"] = "admin"  # type: ignore[index]
    assert dict(rich.claims) == {"role": "admin"}  # no claims leak between tickets
    assert dict(plain[0].claims) == {}


@pytest.mark.parametrize("hash_factory", ["builtin", "hashlib"])
def test_precomputed_hmac_matches_the_standard_library(
    hash_factory: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if hash_factory == "hashlib":  # the fallback for a CPython without _sha2/_sha256
        monkeypatch.setattr(tokens, "_SHA256", hashlib.sha256)
    else:
        assert tokens._SHA256 is not hashlib.sha256  # CPython's own SHA-256 is in use
    for key_len in (0, 1, 31, 32, 63, 64, 65, 200):
        key = bytes(range(256))[:key_len]
        mac = tokens._HmacSha256(key)
        for msg_len in (0, 1, 55, 56, 63, 64, 65, 150, 1000):
            msg = bytes((i * 7 + key_len) % 256 for i in range(msg_len))
            assert mac.sign(msg) == hmac.digest(key, msg, "sha256"), (key_len, msg_len)
        # Each signature starts from the stored states: signing again is the same.
        assert mac.sign(b"x") == mac.sign(b"x") == hmac.digest(key, b"x", "sha256")


def test_round_trip_carries_every_field(secret: str) -> None:
    clock = Clock()
    token = TicketIssuer(secret, clock=clock).issue(
        "alice", audience="/ws/chat", client_ip="::ffff:10.0.0.1", claims={"role": "admin"}
    )
    ticket = TicketVerifier(secret, clock=clock).verify(
        token, audience="/ws/chat", client_ip="10.0.0.1"
    )
    assert ticket.subject == "alice"
    assert ticket.audience == "/ws/chat"
    assert ticket.client_ip == "10.0.0.1"
    assert dict(ticket.claims) == {"role": "admin"}
    assert ticket.issued_at == int(NOW)
    assert ticket.expires_at == int(NOW) + 30 + 5
    assert len(ticket.jti) == 32 and int(ticket.jti, 16) >= 0
    assert ticket.jti[12] == "4" and ticket.jti[16] in "89ab"  # uuid4 layout


def test_ticket_is_immutable(secret: str) -> None:
    ticket = TicketVerifier(secret).verify(TicketIssuer(secret).issue("a"))
    with pytest.raises(AttributeError):
        ticket.subject = "b"  # type: ignore[misc]
    with pytest.raises(TypeError):
        ticket.claims["x"] = 1  # type: ignore[index]
    assert ticket == Ticket(
        ticket.jti, "a", ticket.issued_at, ticket.expires_at, None, None, ticket.claims
    )


def test_a_ticket_is_one_slotted_object(secret: str) -> None:
    # It stays on request.ctx as long as Sanic keeps the connection: no
    # per-instance dict, and equal to one built through the dataclass.
    ticket = TicketVerifier(secret).verify(TicketIssuer(secret).issue("alice"))
    assert not hasattr(ticket, "__dict__")
    assert ticket == Ticket(
        ticket.jti, "alice", ticket.issued_at, ticket.expires_at, None, None, ticket.claims
    )
    # Refused as a frozen dataclass refuses it, whether the name is a field or not.
    for name in ("note", "jti"):
        with pytest.raises(FrozenInstanceError):
            setattr(ticket, name, "x")
        with pytest.raises(FrozenInstanceError):
            delattr(ticket, name)


def test_every_ticket_has_a_fresh_jti(secret: str) -> None:
    issuer, verifier = TicketIssuer(secret), TicketVerifier(secret)
    jtis = {verifier.verify(issuer.issue("a")).jti for _ in range(2000)}
    assert len(jtis) == 2000


def test_stock_itsdangerous_ticket_verifies(secret: str) -> None:
    token = frozen_stock(secret, NOW).dumps({"jti": "0" * 32, "sub": "bob", "aud": "/x"})
    ticket = TicketVerifier(secret, clock=Clock()).verify(token, audience="/x")
    assert (ticket.jti, ticket.subject, ticket.issued_at) == ("0" * 32, "bob", int(NOW))


def test_stock_compressed_ticket_verifies(secret: str) -> None:
    payload = {"jti": "1" * 32, "sub": "bob", "ext": {"blob": "ab" * 400}}
    token = frozen_stock(secret, NOW).dumps(payload)
    assert token.startswith(".")  # stock chose zlib
    assert dict(TicketVerifier(secret, clock=Clock()).verify(token).claims) == payload["ext"]


def test_our_ticket_loads_with_stock_itsdangerous(secret: str) -> None:
    token = TicketIssuer(secret).issue("carol", claims={"k": [1, 2]})
    payload = stock_serializer(secret).loads(token, max_age=30)
    assert payload["sub"] == "carol" and payload["ext"] == {"k": [1, 2]}


def test_our_tickets_are_byte_identical_to_stock(secret: str) -> None:
    clock = Clock()
    issuer = TicketIssuer(secret, clock=clock)
    for payload in (
        {"jti": "3f9c1e7a0b5d42c68e1f9a7b3c5d0e21", "sub": "dave"},
        {"jti": "9d2e4f6a8b0c4d1e9f3a5b7c9d1e3f50", "sub": "u-1842", "aud": "/ws/7"},
        {"jti": "c" * 32, "sub": "x" * 40, "ext": {"blob": "0123456789" * 60}},  # compressed
    ):
        assert issuer.sign_payload(payload) == frozen_stock(secret, NOW).dumps(payload)


@pytest.mark.parametrize(
    "payload",
    [
        {"jti": "d" * 32, "sub": "z" * 150},
        {
            "jti": "9d2e4f6a8b0c4d1e9f3a5b7c9d1e3f50",
            "sub": "dave",
            "aud": "/ws",
            "ip": "127.0.0.1",
            "ext": {"n": 1},
        },
    ],
)
def test_small_payloads_are_never_compressed(secret: str, payload: dict[str, object]) -> None:
    # Stock compresses these (zlib saves a few bytes); we skip zlib at or below the
    # threshold (it costs more than the rest of an issue), and both forms verify everywhere.
    assert len(json.dumps(payload, separators=(",", ":"))) <= COMPRESS_MIN_BYTES
    ours = TicketIssuer(secret, clock=Clock()).sign_payload(payload)
    stock = frozen_stock(secret, NOW).dumps(payload)
    assert not ours.startswith(".") and stock.startswith(".")
    assert frozen_stock(secret, NOW).loads(ours) == payload
    verifier = TicketVerifier(secret, clock=Clock())
    bindings = {"audience": "/ws", "client_ip": "127.0.0.1"} if "aud" in payload else {}
    assert verifier.verify(stock, **bindings) == verifier.verify(ours, **bindings)


def test_rotation_newest_signs_all_verify() -> None:
    old, new = "o" * 40, "n" * 40
    rotated = TicketIssuer([old, new]).issue("e")
    TicketVerifier(new).verify(rotated)
    with pytest.raises(exc.BadSignature):
        TicketVerifier(old).verify(rotated)
    both = TicketVerifier([old, new])
    both.verify(TicketIssuer(old).issue("e"))
    both.verify(rotated)


@pytest.mark.parametrize("bad", ["short", "x" * 31, b"y" * 31, 12345678901234567890, [], None, 3.5])
def test_weak_or_odd_keys_are_refused(bad: object) -> None:
    with pytest.raises(exc.WeakSecretError) as info:
        TicketVerifier(bad)  # type: ignore[arg-type]
    assert "sanic-wsauth secret" in str(info.value)
    with pytest.raises(exc.WeakSecretError):
        TicketIssuer(bad)  # type: ignore[arg-type]


def test_a_weak_key_among_strong_ones_is_refused() -> None:
    with pytest.raises(exc.WeakSecretError):
        TicketVerifier(["s" * 40, "weak"])


def test_expiry_and_leeway_in_both_directions(secret: str) -> None:
    clock = Clock()
    token = TicketIssuer(secret, clock=clock).issue("f")
    verifier = TicketVerifier(secret, max_age=30, leeway=5, clock=clock)
    clock.now = NOW + 35  # max_age + leeway: still valid
    verifier.verify(token)
    clock.now = NOW + 36
    with pytest.raises(exc.TicketExpired):
        verifier.verify(token)
    clock.now = NOW - 5  # issuer's clock 5 s ahead: within leeway
    verifier.verify(token)
    clock.now = NOW - 6
    with pytest.raises(exc.TicketNotYetValid):
        verifier.verify(token)


def test_stock_itsdangerous_rejects_negative_age_but_we_allow_leeway(secret: str) -> None:
    token = frozen_stock(secret, NOW + 3).dumps({"jti": "e" * 32, "sub": "g"})
    TicketVerifier(secret, clock=Clock()).verify(token)
    with pytest.raises(SignatureExpired):
        frozen_stock(secret, NOW).loads(token, max_age=30)  # real clock: dated in the past
    # (stock refuses any negative age; our leeway covers skewed issuers)


def test_wrong_key_and_wrong_salt_are_bad_signatures(secret: str) -> None:
    token = TicketIssuer(secret).issue("h")
    with pytest.raises(exc.BadSignature):
        TicketVerifier("w" * 40).verify(token)
    with pytest.raises(exc.BadSignature):
        TicketVerifier(secret, salt="other-salt").verify(token)


def test_tampering_anywhere_breaks_the_signature(secret: str) -> None:
    token = TicketIssuer(secret).issue("i")
    verifier = TicketVerifier(secret)
    alphabet = "AB"
    for index, char in enumerate(token):
        if char == ".":
            continue
        replacement = alphabet[0] if char != alphabet[0] else alphabet[1]
        tampered = token[:index] + replacement + token[index + 1 :]
        with pytest.raises((exc.BadSignature, exc.MalformedTicket)):
            verifier.verify(tampered)


def test_non_canonical_signature_spelling_is_refused(secret: str) -> None:
    token = TicketIssuer(secret).issue("j")
    value, _, sig = token.rpartition(".")
    # The last base64 character carries 2 spare bits: flipping them keeps the bytes.
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet.index(sig[-1])
    twin = sig[:-1] + alphabet[last ^ 1]
    with pytest.raises(exc.BadSignature):
        TicketVerifier(secret).verify(f"{value}.{twin}")


@pytest.mark.parametrize(
    ("token", "error"),
    [
        ("", exc.MissingTicket),
        ("garbage", exc.MalformedTicket),
        ("a.b", exc.MalformedTicket),
        ("a..b", exc.MalformedTicket),
        ("a.b.c.d!", exc.MalformedTicket),
        ("é.b.c", exc.MalformedTicket),
        ("a b.c.d", exc.MalformedTicket),
        ("a.b." + "c" * 43, exc.BadSignature),
        ("a.b.c", exc.BadSignature),
    ],
)
def test_malformed_input(secret: str, token: str, error: type[Exception]) -> None:
    with pytest.raises(error):
        TicketVerifier(secret).verify(token)


def test_non_string_input_is_missing(secret: str) -> None:
    for value in (None, 5, b"bytes", ["x"]):
        with pytest.raises(exc.MissingTicket):
            TicketVerifier(secret).verify(value)


def test_oversized_ticket_refused_before_decoding(secret: str) -> None:
    verifier = TicketVerifier(secret, max_token_bytes=512)
    with pytest.raises(exc.TicketTooLarge) as info:
        verifier.verify("a" * 513)
    assert info.value.reason == "too_large"
    assert info.value.status == 401


def test_signed_but_invalid_payloads_are_malformed(secret: str) -> None:
    issuer, verifier = TicketIssuer(secret), TicketVerifier(secret)
    for payload in (
        [1, 2],
        {"sub": "x"},
        {"jti": "A" * 32, "sub": "x"},
        {"jti": "a" * 31, "sub": "x"},
        {"jti": "a" * 32},
        {"jti": "a" * 32, "sub": ""},
        {"jti": "a" * 32, "sub": "x" * 257},
        {"jti": "a" * 32, "sub": 5},
        {"jti": "a" * 32, "sub": "x", "aud": 5},
        {"jti": "a" * 32, "sub": "x", "ip": "not-an-ip"},
        {"jti": "a" * 32, "sub": "x", "ip": 7},
        {"jti": "a" * 32, "sub": "x", "ext": [1]},
    ):
        with pytest.raises(exc.MalformedTicket):
            verifier.verify(issuer.sign_payload(payload))  # type: ignore[arg-type]


def test_compressed_payload_bomb_is_refused(secret: str) -> None:
    bomb = zlib.compress(b'{"jti":"' + b"a" * 2_000_000 + b'"}', 9)
    assert len(bomb) < 4096
    segment = "." + urlsafe_b64encode(bomb).decode().rstrip("=")
    issuer = TicketIssuer(secret)
    # Sign the crafted segment exactly as the format prescribes.
    from itsdangerous.encoding import base64_encode, int_to_bytes

    value = segment.encode() + b"." + base64_encode(int_to_bytes(int(NOW)))
    import hmac as _hmac

    signature = base64_encode(_hmac.digest(issuer._key, value, "sha256"))
    token = (value + b"." + signature).decode()
    with pytest.raises(exc.TicketTooLarge):
        TicketVerifier(secret, clock=Clock(), max_token_bytes=8192).verify(token)


def test_bindings(secret: str) -> None:
    issuer, verifier = TicketIssuer(secret), TicketVerifier(secret)
    bound = issuer.issue("k", audience="/ws/chat", client_ip="2001:DB8::1")
    verifier.verify(bound, audience="/ws/chat", client_ip="[2001:db8:0::1]")
    with pytest.raises(exc.AudienceMismatch):
        verifier.verify(issuer.issue("k", audience="/ws/chat"), audience="/ws/admin")
    with pytest.raises(exc.AudienceMismatch):
        verifier.verify(issuer.issue("k", audience="/ws/chat"))
    with pytest.raises(exc.IPMismatch):
        verifier.verify(issuer.issue("k", client_ip="10.0.0.1"), client_ip="10.0.0.2")
    with pytest.raises(exc.IPMismatch):
        verifier.verify(issuer.issue("k", client_ip="10.0.0.1"), client_ip=None)
    with pytest.raises(exc.IPMismatch):
        verifier.verify(issuer.issue("k", client_ip="10.0.0.1"), client_ip="garbage")
    # An unbound ticket passes anywhere.
    verifier.verify(issuer.issue("k"), audience="/anything", client_ip="10.9.9.9")


def test_binding_errors_are_forbidden_not_unauthorized() -> None:
    assert exc.AudienceMismatch().status == 403 and exc.IPMismatch().status == 403
    assert exc.StoreUnavailable().status == 503 and exc.TicketReplayed().status == 401


@pytest.mark.parametrize("subject", ["", "x" * 257])
def test_issue_validates_its_input(secret: str, subject: str) -> None:
    with pytest.raises(ValueError):
        TicketIssuer(secret).issue(subject)
    with pytest.raises(ValueError):
        TicketIssuer(secret).issue("ok", audience="")
    with pytest.raises(ValueError):
        TicketIssuer(secret).issue("ok", client_ip="nope")


def test_decode_unverified_trusts_nothing(secret: str) -> None:
    token = TicketIssuer(secret, clock=Clock()).issue("l", audience="/a")
    payload, issued_at = decode_unverified(token)
    assert payload["sub"] == "l" and payload["aud"] == "/a" and issued_at == int(NOW)
    forged = token[:-3] + "AAA"
    assert decode_unverified(forged)[0]["sub"] == "l"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("[::1]", "::1"),
        ("::ffff:1.2.3.4", "1.2.3.4"),
        ("2001:DB8:0:0::1", "2001:db8::1"),
        (" 10.0.0.1 ", "10.0.0.1"),
    ],
)
def test_normalize_ip(raw: str, expected: str) -> None:
    assert normalize_ip(raw) == expected


def test_constructor_arguments_are_checked(secret: str) -> None:
    with pytest.raises(ValueError):
        TicketVerifier(secret, max_age=0)
    with pytest.raises(ValueError):
        TicketVerifier(secret, leeway=-1)
    with pytest.raises(ValueError):
        TicketIssuer(secret, max_age=-5)
    for bad in (float("nan"), float("inf")):
        with pytest.raises(ValueError):
            TicketVerifier(secret, max_age=bad)  # type: ignore[arg-type]
        with pytest.raises(ValueError):
            TicketVerifier(secret, leeway=bad)  # type: ignore[arg-type]
        with pytest.raises(ValueError):
            TicketVerifier(secret, max_token_bytes=bad)  # type: ignore[arg-type]
        with pytest.raises(ValueError):
            TicketIssuer(secret, max_age=bad)  # type: ignore[arg-type]


def test_token_core_imports_no_sanic_and_no_redis() -> None:
    code = (
        "import sys, sanic_wsauth.tokens, sanic_wsauth.stores, sanic_wsauth.exceptions\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('sanic', 'redis', "
        "'sanic_routing', 'websockets'))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


#: The payload text exactly as the issuer writes it.
_ENCODE = tokens._ENCODER.encode


@settings(max_examples=2000, deadline=None)
@given(
    jti=st.text(alphabet="0123456789abcdef", min_size=32, max_size=32)
    | st.text(alphabet='0123456789abcdefABCDEF"\\x', min_size=30, max_size=34),
    subject=st.text(max_size=40),
    extra=st.sampled_from(["", ',"aud":"/ws"', ',"sub":"again"', " ", '"', "}", "\x01", "\\"]),
)
def test_plain_payload_reader_agrees_with_json(jti: str, subject: str, extra: str) -> None:
    """Where the string-operation reader answers, json.loads gives the same."""
    text = _ENCODE({"jti": jti, "sub": subject})
    candidates = (
        text,
        text[:-1] + extra + "}",
        text[:-2] + extra + '"}',
        text.replace('","sub"', extra + '","sub"'),
    )
    for candidate in candidates:
        plain = tokens._plain_ticket(candidate)
        if plain is not None:
            assert {"jti": plain[0], "sub": plain[1]} == json.loads(candidate)


def test_plain_payload_reader_takes_our_plain_tickets(secret: str) -> None:
    issuer = TicketIssuer(secret)
    for subject in ("bench-user", "user@example.com", "Zoë 42", "a" * 256):
        payload, _ = decode_unverified(issuer.issue(subject))
        text = _ENCODE(payload)
        assert payload == {"jti": payload["jti"], "sub": subject}
        assert tokens._plain_ticket(text) == (payload["jti"], subject)
    # Not plain: left to the JSON scanner.
    for subject in ('say "hi"', "back\\slash", "tab\there", "nul\x00"):
        text = _ENCODE({"jti": "0" * 32, "sub": subject})
        assert tokens._plain_ticket(text) is None
    assert tokens._plain_ticket(_ENCODE({"jti": "0" * 32, "sub": "a", "aud": "/ws"})) is None
    assert tokens._plain_ticket(_ENCODE({"sub": "a", "jti": "0" * 32})) is None


_VALUE_RE = re.compile(r"\.?[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")


@settings(max_examples=3000, deadline=None)
@given(value=st.text(alphabet="aZ09-_.+/=!é ", max_size=12))
def test_shape_check_agrees_with_the_format_pattern(value: str) -> None:
    if value.isascii():
        assert tokens._well_formed(value.encode()) == bool(_VALUE_RE.fullmatch(value))


@settings(
    max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_refusals_are_classified_as_the_format_pattern_says(
    secret: str, data: st.DataObject
) -> None:
    """A ticket that is not authentic: malformed if the pattern fails, else a bad signature."""
    token = TicketIssuer(secret).issue("alice")
    index = data.draw(st.integers(0, len(token) - 1))
    char = data.draw(st.sampled_from(list("aZ9-_.+/=é ")))
    mutated = token[:index] + char + token[index + 1 :]
    if mutated == token:
        return
    with pytest.raises((exc.MalformedTicket, exc.BadSignature)) as info:
        TicketVerifier(secret).verify(mutated)
    expected = (
        exc.MalformedTicket if tokens._TOKEN_RE.fullmatch(mutated) is None else exc.BadSignature
    )
    assert type(info.value) is expected, mutated


def test_signature_spelled_in_the_standard_alphabet_is_malformed(secret: str) -> None:
    # "+" and "/" are base64 but not base64url: never another spelling of a
    # valid signature.
    issuer, verifier = TicketIssuer(secret), TicketVerifier(secret)
    for _ in range(200):
        token = issuer.issue("alice")
        signature = token.rpartition(".")[2]
        if "-" in signature or "_" in signature:
            break
    else:
        pytest.fail("no signature with - or _ in 200 tickets")
    value = token.rpartition(".")[0]
    respelled = value + "." + signature.replace("-", "+").replace("_", "/")
    with pytest.raises(exc.MalformedTicket):
        verifier.verify(respelled)
    assert verifier.verify(token).subject == "alice"


def test_the_issuer_refuses_a_ticket_over_its_size_limit_when_given_one(secret: str) -> None:
    import secrets as random_source

    claims = {"blob": random_source.token_urlsafe(6000)}  # random: it does not compress
    # No limit by default: another issuer may feed verifiers with a larger one.
    roomy = TicketIssuer(secret).issue("alice", claims=claims)
    assert len(roomy) > DEFAULT_MAX_TOKEN_BYTES
    assert TicketVerifier(secret, max_token_bytes=len(roomy)).verify(roomy).subject == "alice"
    limited = TicketIssuer(secret, max_token_bytes=DEFAULT_MAX_TOKEN_BYTES)
    with pytest.raises(ValueError, match="over max_token_bytes"):
        limited.issue("alice", claims=claims)
    assert TicketVerifier(secret).verify(limited.issue("alice")).subject == "alice"
    with pytest.raises(ValueError):
        TicketIssuer(secret, max_token_bytes=0)
