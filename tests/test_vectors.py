"""Format v1 test vectors (tests/vectors.json), checked in both directions.

Each valid vector is produced exactly by four independent routes: the
step-by-step recipe of docs/ticket-format.md written with nothing but the
standard library, our :class:`TicketIssuer`, and stock itsdangerous (its
signer always; its serializer too, unless it compresses a small payload, in
which case it produces the vector's ``stock_ticket``). :class:`TicketVerifier`
and stock itsdangerous load every one of them. Invalid vectors fail with their
documented reason code.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from itsdangerous import BadSignature as StockBadSignature
from itsdangerous import URLSafeTimedSerializer
from itsdangerous.timed import TimestampSigner

from sanic_wsauth.exceptions import WSAuthError
from sanic_wsauth.tokens import (
    COMPRESS_MIN_BYTES,
    DEFAULT_LEEWAY,
    DEFAULT_MAX_AGE,
    DEFAULT_MAX_TOKEN_BYTES,
    SALT,
    TicketIssuer,
    TicketVerifier,
    stock_serializer,
)

VECTORS: dict[str, Any] = json.loads(
    (Path(__file__).with_name("vectors.json")).read_text(encoding="utf-8")
)
DOC = Path(__file__).resolve().parent.parent / "docs" / "ticket-format.md"
SECRET: str = VECTORS["secret"]
VALID: list[dict[str, Any]] = VECTORS["valid"]
INVALID: list[dict[str, Any]] = VECTORS["invalid"]


def _ids(vectors: list[dict[str, Any]]) -> list[str]:
    return [v["name"] for v in vectors]


def _b64(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def reference_mint(payload: Any, timestamp: int, secret: str, salt: str) -> str:
    """docs/ticket-format.md "Minting", step by step, stdlib only."""
    # 1. compact JSON, non-ASCII as raw UTF-8 (as stock itsdangerous and our issuer write it)
    data = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    # 2. payload segment; compress only above 256 bytes, with stock's rule
    segment = _b64(data)
    if len(data) > 256:
        compressed = zlib.compress(data)
        if len(compressed) < len(data) - 1:
            segment = b"." + _b64(compressed)
    # 3. timestamp: 8 bytes big-endian, leading zero bytes stripped
    stamp = _b64(timestamp.to_bytes(8, "big").lstrip(b"\x00"))
    # 4. derived key, 5. signature over "<payload>.<timestamp>"
    key = hmac.new(secret.encode("utf-8"), salt.encode("utf-8"), hashlib.sha256).digest()
    signing_input = segment + b"." + stamp
    signature = _b64(hmac.new(key, signing_input, hashlib.sha256).digest())
    return (signing_input + b"." + signature).decode("ascii")


def fixed(now: float) -> Callable[[], float]:
    return lambda: now


def frozen_stock(timestamp: int, *, secret: str = SECRET) -> URLSafeTimedSerializer:
    """Stock itsdangerous with its clock frozen at ``timestamp``."""

    class FrozenSigner(TimestampSigner):
        def get_timestamp(self) -> int:
            return timestamp

    return URLSafeTimedSerializer(
        secret,
        salt=VECTORS["salt"],
        signer=FrozenSigner,
        signer_kwargs={"digest_method": hashlib.sha256, "key_derivation": "hmac"},
    )


def test_file_parameters_match_the_library_defaults() -> None:
    assert VECTORS["format"] == "sanic-wsauth ticket v1"
    assert VECTORS["salt"] == SALT == "sanic-wsauth"
    assert VECTORS["verify"] == {
        "max_age": DEFAULT_MAX_AGE,
        "leeway": DEFAULT_LEEWAY,
        "max_token_bytes": DEFAULT_MAX_TOKEN_BYTES,
    }
    assert COMPRESS_MIN_BYTES == 256  # the threshold the document states
    derived = hmac.new(SECRET.encode(), SALT.encode(), hashlib.sha256).hexdigest()
    assert VECTORS["derived_key_hex"] == derived
    # The set covers what it claims to.
    assert any(v["compressed"] for v in VALID) and not all(v["compressed"] for v in VALID)
    assert any(v["timestamp"] >= 2**32 for v in VALID)
    assert any("stock_ticket" in v for v in VALID)
    reasons = {v["reason"] for v in INVALID}
    assert reasons >= {
        "missing", "malformed", "too_large", "bad_signature", "expired",
        "not_yet_valid", "audience_mismatch", "ip_mismatch",
    }  # fmt: skip


@pytest.mark.parametrize("vector", VALID, ids=_ids(VALID))
def test_vector_steps_are_consistent(vector: dict[str, Any]) -> None:
    assert json.loads(vector["json"]) == vector["payload"]
    assert vector["json"] == json.dumps(
        vector["payload"], separators=(",", ":"), ensure_ascii=False
    )
    assert vector["signing_input"] == f"{vector['payload_segment']}.{vector['timestamp_segment']}"
    assert vector["ticket"] == f"{vector['signing_input']}.{vector['signature']}"
    assert vector["compressed"] == vector["payload_segment"].startswith(".")
    assert len(vector["signature"]) == 43


@pytest.mark.parametrize("vector", VALID, ids=_ids(VALID))
def test_document_recipe_mints_the_exact_ticket(vector: dict[str, Any]) -> None:
    minted = reference_mint(vector["payload"], vector["timestamp"], SECRET, VECTORS["salt"])
    assert minted == vector["ticket"]


@pytest.mark.parametrize("vector", VALID, ids=_ids(VALID))
def test_our_issuer_mints_the_exact_ticket(vector: dict[str, Any]) -> None:
    issuer = TicketIssuer(SECRET, clock=lambda: vector["timestamp"] + 0.9)
    assert issuer.sign_payload(vector["payload"]) == vector["ticket"]


@pytest.mark.parametrize("vector", VALID, ids=_ids(VALID))
def test_stock_itsdangerous_mints_the_exact_ticket(vector: dict[str, Any]) -> None:
    stock = frozen_stock(vector["timestamp"])
    # The signing layer is identical for every vector ...
    signed = stock.make_signer(stock.salt).sign(vector["payload_segment"]).decode()
    assert signed == vector["ticket"]
    # ... and the serializer differs only where the vector says so: it
    # compresses any payload that shrinks.
    assert stock.dumps(vector["payload"]) == vector.get("stock_ticket", vector["ticket"])


@pytest.mark.parametrize("vector", VALID, ids=_ids(VALID))
def test_stock_itsdangerous_loads_the_vector(vector: dict[str, Any]) -> None:
    stock = stock_serializer(SECRET)
    for ticket in (vector["ticket"], vector.get("stock_ticket", vector["ticket"])):
        payload, issued = stock.loads(ticket, return_timestamp=True)
        assert payload == vector["payload"]
        assert int(issued.timestamp()) == vector["timestamp"]


@pytest.mark.parametrize("vector", VALID, ids=_ids(VALID))
def test_our_verifier_accepts_the_vector(vector: dict[str, Any]) -> None:
    payload = vector["payload"]
    issued = vector["timestamp"]
    limits = VECTORS["verify"]
    tickets = [vector["ticket"], vector.get("stock_ticket", vector["ticket"])]
    # Accepted from leeway seconds early to max_age + leeway seconds late.
    for now in (issued, issued - limits["leeway"], issued + limits["max_age"] + limits["leeway"]):
        verifier = TicketVerifier(SECRET, clock=fixed(now))
        for ticket in tickets:
            result = verifier.verify(
                ticket, audience=payload.get("aud"), client_ip=payload.get("ip")
            )
            assert result.jti == payload["jti"]
            assert result.subject == payload["sub"]
            assert result.audience == payload.get("aud")
            assert result.client_ip == payload.get("ip")
            assert dict(result.claims) == payload.get("ext", {})
            assert result.issued_at == issued
            assert result.expires_at == issued + limits["max_age"] + limits["leeway"]


@pytest.mark.parametrize("vector", INVALID, ids=_ids(INVALID))
def test_invalid_vector_fails_with_its_reason(vector: dict[str, Any]) -> None:
    verifier = TicketVerifier(SECRET, clock=lambda: vector["now"])
    with pytest.raises(WSAuthError) as caught:
        verifier.verify(
            vector["ticket"], audience=vector.get("audience"), client_ip=vector.get("client_ip")
        )
    assert caught.value.reason == vector["reason"]


@pytest.mark.parametrize(
    "vector", [v for v in INVALID if v["reason"] == "bad_signature"], ids=lambda v: v["name"]
)
def test_stock_itsdangerous_agrees_on_bad_signatures(vector: dict[str, Any]) -> None:
    stock = stock_serializer(SECRET)
    if vector["name"].startswith("non-canonical"):
        # Stock decodes before comparing, so it accepts the second spelling
        # of the last character; we compare canonical text and refuse it.
        # (This is why the replay set is keyed on jti, not on the string.)
        assert stock.loads(vector["ticket"]) == VALID[0]["payload"]
        return
    with pytest.raises(StockBadSignature):
        stock.loads(vector["ticket"])


def test_expiry_vectors_sit_exactly_one_second_past_the_edge() -> None:
    limits = VECTORS["verify"]
    minimal = VALID[0]
    expired = next(v for v in INVALID if v["reason"] == "expired")
    early = next(v for v in INVALID if v["reason"] == "not_yet_valid")
    assert expired["ticket"] == early["ticket"] == minimal["ticket"]
    assert expired["now"] == minimal["timestamp"] + limits["max_age"] + limits["leeway"] + 1
    assert early["now"] == minimal["timestamp"] - limits["leeway"] - 1


def _documented_mint() -> Callable[..., str]:
    """The Python ``mint()`` snippet of docs/ticket-format.md, executed as it is."""
    text = DOC.read_text(encoding="utf-8")
    intro = text.index("The same in Python, with the standard library only")
    match = re.compile(r"```python\n(.*?)```", re.DOTALL).search(text, intro)
    assert match is not None, "no Python snippet after the step-by-step recipe"
    namespace: dict[str, Any] = {}
    exec(compile(match.group(1), str(DOC), "exec"), namespace)  # noqa: S102 - our own doc
    mint: Callable[..., str] = namespace["mint"]
    return mint


@pytest.mark.parametrize("vector", VALID, ids=_ids(VALID))
def test_documented_python_snippet_mints_the_exact_ticket(vector: dict[str, Any]) -> None:
    mint = _documented_mint()
    assert mint(vector["payload"], vector["timestamp"], SECRET, VECTORS["salt"]) == vector["ticket"]
    assert mint(vector["payload"], vector["timestamp"], SECRET) == vector["ticket"]  # default salt


def test_document_states_the_test_vector_parameters() -> None:
    text = " ".join(DOC.read_text(encoding="utf-8").split())
    match = re.search(
        r"All vectors use the secret `([^`]+)` \((\d+) bytes\), the salt `([^`]+)`", text
    )
    assert match is not None
    assert match.group(1) == SECRET
    assert int(match.group(2)) == len(SECRET.encode("utf-8"))
    assert match.group(3) == VECTORS["salt"]
    assert VECTORS["derived_key_hex"] in text
