"""The ticket core: issue and verify signed, short-lived WebSocket tickets.

This module imports only the standard library and itsdangerous, so any
Python service that holds the shared secret (Flask, Django, a CLI) can issue
tickets that a Sanic server verifies.

Format v1 (see ``docs/ticket-format.md``) is exactly what
``itsdangerous.URLSafeTimedSerializer(secret_keys, salt=SALT,
signer_kwargs={"digest_method": hashlib.sha256, "key_derivation": "hmac"})``
produces for a compact JSON payload ``{"jti", "sub", ["aud"], ["ip"],
["ext"]}``. The hot path below keeps that format (same JSON, same signing,
same encodings) but derives the signing keys once, at construction, instead of
on every call as stock itsdangerous does. One deliberate difference: stock
zlib-compresses any payload that shrinks by 2 bytes or more, while our issuer
applies that rule only above ``COMPRESS_MIN_BYTES`` (zlib's set-up costs more
than the rest of an issue). Both forms verify everywhere; the interop tests and
the test vectors prove both directions.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import math
import os
import re
import time
import zlib
from base64 import urlsafe_b64decode
from binascii import Error as BinasciiError
from binascii import a2b_base64, b2a_base64
from collections.abc import Callable, Iterable, Mapping
from dataclasses import FrozenInstanceError, dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from itsdangerous import URLSafeTimedSerializer
from itsdangerous.encoding import base64_encode, int_to_bytes

from .exceptions import (
    AudienceMismatch,
    BadSignature,
    ConfigurationError,
    IPMismatch,
    MalformedTicket,
    MissingTicket,
    TicketExpired,
    TicketNotYetValid,
    TicketTooLarge,
    WeakSecretError,
)

if TYPE_CHECKING:
    from ._speedups import PlainVerifier

__all__ = [
    "DEFAULT_LEEWAY",
    "DEFAULT_MAX_AGE",
    "DEFAULT_MAX_TOKEN_BYTES",
    "MIN_KEY_BYTES",
    "SALT",
    "SecretKeys",
    "Ticket",
    "TicketIssuer",
    "TicketVerifier",
    "comparable_bytes",
    "decode_unverified",
    "normalize_ip",
    "stock_serializer",
]

SALT = "sanic-wsauth"
DEFAULT_MAX_AGE = 30
DEFAULT_LEEWAY = 5
MIN_KEY_BYTES = 32
DEFAULT_MAX_TOKEN_BYTES = 4096
#: Upper bound on the decoded (and, if compressed, inflated) JSON payload.
MAX_PAYLOAD_BYTES = 16384
MAX_SUBJECT_CHARS = 256
MAX_AUDIENCE_CHARS = 256

SecretKeys = str | bytes | Iterable[str | bytes]

_KEYGEN_HINT = (
    "generate one with `sanic-wsauth secret` or "
    '`python -c "import secrets; print(secrets.token_urlsafe(48))"`'
)
_TOKEN_RE = re.compile(r"\.?[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")
_HEX = "0123456789abcdef"
_VARIANT = {d: "89ab"[int(d, 16) & 3] for d in _HEX}
_DIGEST = "sha256"
_SIG_CHARS = 43  # unpadded base64url of a SHA-256 digest
_MAX_TS_CHARS = 11  # base64url of 8 bytes
#: Payloads up to this size are never compressed (see docs/ticket-format.md).
COMPRESS_MIN_BYTES = 256
#: Stock itsdangerous' _CompactJSON: compact separators, non-ASCII as raw UTF-8.
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)
#: The C scanner behind ``json.loads``, called directly on the common case.
_SCAN: Callable[[str, int], tuple[Any, int]] = json.JSONDecoder().scan_once  # type: ignore[attr-defined]
#: base64url <-> standard alphabet (binascii speaks the standard one).
_FROM_URLSAFE = bytes.maketrans(b"-_", b"+/")
_TO_URLSAFE = bytes.maketrans(b"+/", b"-_")
_B64URL_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_DOT = ord(".")
_TS_CACHE: dict[str, int] = {}
_TS_CACHE_SIZE = 64
#: A plain ticket's payload with an ASCII subject: printable, no quote or backslash.
_PLAIN_RE = re.compile(r'\{"jti":"([0-9a-f]{32})","sub":"([ !#-\[\]-~]+)"\}')

#: The optional C accelerator (sanic_wsauth/_speedups.c), unless it was not
#: built or ``SANIC_WSAUTH_NO_EXTENSIONS`` is set: then the Python path alone.
_PlainVerifier: type[PlainVerifier] | None = None
if not os.environ.get("SANIC_WSAUTH_NO_EXTENSIONS"):
    try:
        from ._speedups import PlainVerifier as _PlainVerifier
    except ImportError:  # pragma: no cover - depends on the build
        pass
#: Whether this process verifies with the C accelerator.
SPEEDUPS = _PlainVerifier is not None


@dataclass(frozen=True, slots=True)
class Ticket:
    """A verified ticket.

    Attributes:
        jti: The ticket's unique id (uuid4 hex); the replay set is keyed on it.
        subject: Who the ticket was issued to (``sub``).
        issued_at: Issue time, whole seconds since the epoch (signed).
        expires_at: The last second at which the verifier still accepts it
            (``issued_at + max_age + leeway``); replay entries live this long.
        audience: The route or channel the ticket is bound to, if any.
        client_ip: The client address the ticket is bound to, if any.
        claims: Application claims (``ext``), read-only.
    """

    # Slots: a ticket stays on ``request.ctx`` as long as Sanic keeps the
    # connection (up to 30 s after it closed): one object, not two, for the
    # garbage collector to walk.

    jti: str
    subject: str
    issued_at: int
    expires_at: int
    audience: str | None = None
    client_ip: str | None = None
    claims: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))


def _refuse_assignment(self: Ticket, name: str, value: object) -> None:
    raise FrozenInstanceError(f"cannot assign to field {name!r}")


def _refuse_deletion(self: Ticket, name: str) -> None:
    raise FrozenInstanceError(f"cannot delete field {name!r}")


# A frozen dataclass with slots refuses a new attribute with a TypeError (its
# generated __setattr__ names the class it replaced; CPython 3.10 to 3.13):
# refuse every assignment and deletion with FrozenInstanceError, as before.
Ticket.__setattr__ = _refuse_assignment  # type: ignore[method-assign,assignment]
Ticket.__delattr__ = _refuse_deletion  # type: ignore[method-assign,assignment]

_FIELDS = ("jti", "subject", "issued_at", "expires_at", "audience", "client_ip", "claims")
if Ticket.__slots__ != _FIELDS:  # pragma: no cover - a guard for whoever edits Ticket
    raise ImportError("Ticket's slots and _FIELDS disagree")


class _TicketDraft:
    """Ticket's slots, in Ticket's order, without its frozen ``__setattr__``.

    :func:`_make_ticket` fills one with plain attribute stores, then makes it
    a Ticket by assigning ``__class__`` (allowed: the two layouts are the
    same). Half the cost of calling each slot's setter, and a fifth of the
    generated frozen ``__init__``.
    """

    __slots__ = _FIELDS
    jti: str
    subject: str
    issued_at: int
    expires_at: int
    audience: str | None
    client_ip: str | None
    claims: Mapping[str, Any]


_new_draft = object.__new__
#: The claims of every ticket that has none: one shared read-only view of an
#: empty dict that nothing can reach to change (one object less per ticket).
_NO_CLAIMS: Mapping[str, Any] = MappingProxyType({})


def _make_ticket(
    jti: str,
    subject: str,
    issued_at: int,
    expires_at: int,
    audience: str | None,
    client_ip: str | None,
    claims: Mapping[str, Any],
) -> Ticket:
    # Same fields, same equality and immutability as Ticket(...) gives.
    draft = _new_draft(_TicketDraft)
    draft.jti = jti
    draft.subject = subject
    draft.issued_at = issued_at
    draft.expires_at = expires_at
    draft.audience = audience
    draft.client_ip = client_ip
    draft.claims = claims
    draft.__class__ = Ticket  # type: ignore[assignment]
    return draft  # type: ignore[return-value]


def _text_bytes(text: str) -> bytes:
    """``text`` as UTF-8; bytes that were not UTF-8 come back as they were.

    The environment and the command line keep such bytes as lone surrogates
    (``surrogateescape``). Any other lone surrogate raises UnicodeEncodeError.
    """
    return text.encode("utf-8", "surrogateescape")


def _salt_bytes(salt: str) -> bytes:
    if not isinstance(salt, str):
        raise ConfigurationError("the salt must be a string")
    try:
        return _text_bytes(salt)
    except UnicodeEncodeError:
        raise ConfigurationError("the salt holds a lone surrogate, which is not text") from None


def _coerce_keys(secret_keys: SecretKeys) -> list[bytes]:
    """Return the keys as bytes, oldest first, refusing weak or odd values."""
    if isinstance(secret_keys, (str, bytes)):
        candidates: list[object] = [secret_keys]
    else:
        try:
            candidates = list(secret_keys)
        except TypeError:
            raise WeakSecretError(
                f"secret key must be a string, not {type(secret_keys).__name__}; {_KEYGEN_HINT}"
            ) from None
    if not candidates:
        raise WeakSecretError(f"no secret key configured; {_KEYGEN_HINT}")
    keys: list[bytes] = []
    for key in candidates:
        if isinstance(key, str):
            try:
                raw = _text_bytes(key)
            except UnicodeEncodeError:
                raise WeakSecretError(
                    f"secret key holds a lone surrogate, which is not text; {_KEYGEN_HINT}"
                ) from None
        elif isinstance(key, bytes):
            raw = key
        else:
            # Sanic turns a numeric SANIC_WSAUTH_SECRET into an int: refuse it.
            raise WeakSecretError(
                f"secret key must be a string, not {type(key).__name__}; {_KEYGEN_HINT}"
            )
        if len(raw) < MIN_KEY_BYTES:
            raise WeakSecretError(
                f"secret key is {len(raw)} bytes; at least {MIN_KEY_BYTES} are required; "
                f"{_KEYGEN_HINT}"
            )
        keys.append(raw)
    return keys


def _derive(key: bytes, salt: bytes) -> bytes:
    # itsdangerous key_derivation="hmac": HMAC(secret, salt) with the digest.
    return hmac.digest(key, salt, _DIGEST)


def _builtin_sha256() -> Callable[[bytes], Any]:
    """CPython's own SHA-256 (``_sha2`` from 3.12, ``_sha256`` before), else hashlib's."""
    try:
        from _sha2 import sha256  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        try:
            from _sha256 import sha256  # type: ignore[import-not-found,no-redef,unused-ignore]
        except ImportError:  # pragma: no cover - a CPython built without them
            return hashlib.sha256
    return sha256  # type: ignore[no-any-return,unused-ignore]


_SHA256 = _builtin_sha256()
_BLOCK = 64  # SHA-256's block size
_IPAD = bytes(x ^ 0x36 for x in range(256))
_OPAD = bytes(x ^ 0x5C for x in range(256))


class _HmacSha256:
    """HMAC-SHA256 (RFC 2104) for one key, its inner and outer states precomputed.

    Each signature copies two hash states and hashes the message: the same
    bytes as ``hmac.digest(key, msg, "sha256")`` (a test checks that), with
    the key set-up done once. CPython's built-in SHA-256 is used rather than
    OpenSSL's: for a ticket-sized message it is as fast, and it runs far less
    code, which is what counts in a server where every request finds the CPU
    caches cold (measured: about half the cost of an OpenSSL HMAC copy then).
    """

    __slots__ = ("_inner", "_outer")

    def __init__(self, key: bytes) -> None:
        if len(key) > _BLOCK:
            key = hashlib.sha256(key).digest()
        key = key.ljust(_BLOCK, b"\0")
        self._inner = _SHA256(key.translate(_IPAD))
        self._outer = _SHA256(key.translate(_OPAD))

    def sign(self, value: bytes) -> bytes:
        inner = self._inner.copy()
        inner.update(value)
        outer = self._outer.copy()
        outer.update(inner.digest())
        digest: bytes = outer.digest()
        return digest


def _check_positive(name: str, value: float) -> None:
    if not 0 < value < math.inf:  # NaN fails both comparisons
        raise ValueError(f"{name} must be a positive, finite number")


def normalize_ip(value: str) -> str:
    """Return the canonical text form of an IPv4 or IPv6 address.

    Brackets (``[::1]``) are stripped, IPv6 is compressed and lower-cased,
    and an IPv4-mapped IPv6 address becomes its IPv4 form.

    Raises:
        ValueError: ``value`` is not an IP address.
    """
    text = value.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    address = ipaddress.ip_address(text)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


def stock_serializer(secret_keys: SecretKeys, *, salt: str = SALT) -> URLSafeTimedSerializer:
    """Build the stock itsdangerous serializer for format v1.

    Tickets it ``dumps`` verify with :class:`TicketVerifier`, and tickets
    :class:`TicketIssuer` makes ``loads`` with it. Useful for other issuers
    and for interop tests; our own classes are faster.
    """
    return URLSafeTimedSerializer(
        _coerce_keys(secret_keys),
        salt=salt,
        signer_kwargs={"digest_method": hashlib.sha256, "key_derivation": "hmac"},
    )


def _b64(segment: str) -> bytes:
    """Decode one base64url segment (already checked against the alphabet)."""
    try:
        return urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except (BinasciiError, ValueError) as exc:
        raise MalformedTicket("invalid base64") from exc


def _split(token: object, max_token_bytes: int) -> tuple[str, str, str, str]:
    """Split a token into its signed value and its three segments."""
    if not isinstance(token, str) or not token:
        raise MissingTicket()
    if len(token) > max_token_bytes:
        raise TicketTooLarge()
    if _TOKEN_RE.fullmatch(token) is None:
        raise MalformedTicket()
    value, _, signature = token.rpartition(".")
    payload, _, timestamp = value.rpartition(".")
    return value, payload, timestamp, signature


def _well_formed(signed: bytes) -> bool:
    """Whether ``payload.timestamp`` (bytes) has the format's shape.

    The same answer as the format's pattern (``\\.?[A-Za-z0-9_-]+\\.[A-Za-z0-9_-]+``;
    a test holds the two together), from one ``bytes.translate``: what is
    left once the alphabet is deleted must be the one separator, or a
    compressed payload's leading dot and the separator.
    """
    dots = signed.translate(None, _B64URL_ALPHABET)
    if dots == b".":
        return signed[0] != _DOT and signed[-1] != _DOT
    return dots == b".." and signed[0] == _DOT and signed[1] != _DOT and signed[-1] != _DOT


def _refusal(token: str) -> MalformedTicket | BadSignature:
    """The error for a ticket that failed a cheap check: malformed, or a bad signature."""
    return MalformedTicket() if _TOKEN_RE.fullmatch(token) is None else BadSignature()


def _timestamp(segment: str) -> int:
    # Tickets issued in the same second share this segment: remember the
    # last few decodings (bounded, and only of well-formed segments).
    value = _TS_CACHE.get(segment)
    if value is None:
        if len(segment) > _MAX_TS_CHARS:
            raise MalformedTicket("bad timestamp")
        value = int.from_bytes(_b64(segment), "big")
        if len(_TS_CACHE) >= _TS_CACHE_SIZE:
            _TS_CACHE.clear()
        _TS_CACHE[segment] = value
    return value


def _plain_ticket(text: str) -> tuple[str, str] | None:
    """``(jti, sub)`` of a plain ticket, ``{"jti":"<32 hex>","sub":"<subject>"}``, or None.

    That is the exact text our issuer (and stock itsdangerous, for the same
    dict) writes for a ticket without audience, address or claims. It is
    read with one regular expression (an ASCII subject) or a few string
    operations (any other) instead of the JSON scanner, for a subject
    without quotes, backslashes or unprintable characters, where the result
    is certainly what ``json.loads`` returns. Anything else is None, and goes
    to the scanner (a test holds the two to the same answers).
    """
    match = _PLAIN_RE.fullmatch(text)
    if match is not None:
        jti, subject = match.group(1, 2)
        return jti, subject
    return _plain_beyond_ascii(text)


def _plain_beyond_ascii(text: str) -> tuple[str, str] | None:
    """:func:`_plain_ticket` for a text the pattern did not match: only a
    non-ASCII subject can still make it a plain ticket."""
    if text.isascii():
        return None
    if text[:8] != '{"jti":"' or text[40:49] != '","sub":"' or text[-2:] != '"}':
        return None
    jti = text[8:40]
    subject = text[49:-2]
    if jti.strip(_HEX) or '"' in subject or "\\" in subject or not subject.isprintable():
        return None
    return jti, subject


def _load_payload(segment: str) -> Any:
    """The payload: a plain ticket's ``(jti, sub)`` tuple, else the decoded JSON."""
    if segment[0] != ".":
        try:
            # The alphabet is already checked; excess "=" is ignored by binascii.
            raw = a2b_base64(segment.encode("ascii").translate(_FROM_URLSAFE) + b"==")
        except (BinasciiError, ValueError) as exc:
            raise MalformedTicket("invalid base64") from exc
        if raw[:2] == b'{"':
            # Scanned directly; anything but one bare object is left to
            # json.loads below. Strict UTF-8, as stock itsdangerous decodes
            # (encoded surrogates are not UTF-8).
            try:
                text = raw.decode("utf-8")
            except ValueError as exc:
                raise MalformedTicket("bad payload") from exc
            match = _PLAIN_RE.fullmatch(text)  # _plain_ticket, inline
            plain = match.group(1, 2) if match is not None else _plain_beyond_ascii(text)
            if plain is not None:
                return plain
            try:
                obj, end = _SCAN(text, 0)
            except (ValueError, RecursionError, StopIteration) as exc:
                raise MalformedTicket("bad payload") from exc
            if end == len(text):
                return obj
    if segment[0] == ".":
        inflater = zlib.decompressobj()
        try:
            # One byte over the cap tells "too large" from "exactly the cap".
            raw = inflater.decompress(_b64(segment[1:]), MAX_PAYLOAD_BYTES + 1)
        except zlib.error as exc:
            raise MalformedTicket("bad compression") from exc
        if len(raw) > MAX_PAYLOAD_BYTES or inflater.unconsumed_tail:
            raise TicketTooLarge("payload too large")
        if not inflater.eof:
            # A truncated stream (no final block or checksum): stock
            # zlib.decompress refuses it; its prefix is not the payload.
            raise MalformedTicket("bad compression")
    else:
        raw = _b64(segment)
    try:
        # Strict UTF-8, as stock itsdangerous: json.loads on bytes would also
        # take a BOM, UTF-16 or UTF-32.
        return json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError) as exc:
        raise MalformedTicket("bad payload") from exc


def comparable_bytes(text: str) -> bytes:
    """``text`` as bytes for a constant-time comparison, whatever it holds.

    ``surrogatepass`` maps every string, a lone surrogate included (JSON can
    carry one as ``\\ud800``; a command line can pass one), to distinct bytes,
    where a strict ``encode()`` would raise.
    """
    return text.encode("utf-8", "surrogatepass")


def _new_jti() -> str:
    # uuid.uuid4().hex, built without the UUID object (a third of the cost).
    digits = os.urandom(16).hex()
    return f"{digits[:12]}4{digits[13:16]}{_VARIANT[digits[16]]}{digits[17:]}"


def decode_unverified(
    token: str, *, max_token_bytes: int = DEFAULT_MAX_TOKEN_BYTES
) -> tuple[Any, int]:
    """Decode a ticket's payload and issue time **without** checking anything.

    For inspection and debugging only: nothing returned here is trustworthy.

    Returns:
        The decoded JSON payload and the timestamp (seconds since the epoch).

    Raises:
        MissingTicket, TicketTooLarge, MalformedTicket: it cannot be decoded.
    """
    _, segment, timestamp, _ = _split(token, max_token_bytes)
    payload = _load_payload(segment)
    if payload.__class__ is tuple:
        payload = {"jti": payload[0], "sub": payload[1]}
    return payload, _timestamp(timestamp)


class TicketIssuer:
    """Mint tickets.

    Args:
        secret_keys: One key, or a sequence oldest to newest; the newest signs.
            Each key must be at least 32 bytes.
        salt: Namespaces the derived key; must match the verifier's.
        max_age: Advertised lifetime in seconds (``expires_in``).
        max_token_bytes: If set, :meth:`issue` refuses to mint a longer
            ticket, which a verifier with that limit would refuse: pass the
            verifiers' limit. None (the default) sets no limit.
        clock: Returns the current time in seconds; injected by tests.

    Raises:
        WeakSecretError: a key is missing, not a string, or too short.
    """

    __slots__ = ("_clock", "_key", "_mac", "max_age", "max_token_bytes", "salt")

    def __init__(
        self,
        secret_keys: SecretKeys,
        *,
        salt: str = SALT,
        max_age: int = DEFAULT_MAX_AGE,
        max_token_bytes: int | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        _check_positive("max_age", max_age)
        if max_token_bytes is not None:
            _check_positive("max_token_bytes", max_token_bytes)
        self.salt = salt
        self.max_age = max_age
        self.max_token_bytes = max_token_bytes
        self._key = _derive(_coerce_keys(secret_keys)[-1], _salt_bytes(salt))
        self._mac = _HmacSha256(self._key)
        self._clock = clock

    def issue(
        self,
        subject: str,
        *,
        audience: str | None = None,
        client_ip: str | None = None,
        claims: Mapping[str, Any] | None = None,
    ) -> str:
        """Mint a one-time ticket for ``subject``.

        Args:
            subject: Who the ticket is for (user id); 1 to 256 characters.
            audience: Bind the ticket to one route or channel.
            client_ip: Bind the ticket to one client address (normalised).
            claims: JSON-serialisable application claims, carried as ``ext``.

        Raises:
            ValueError: a field is empty, too long, not an IP, or not JSON; or
                the ticket would be longer than ``max_token_bytes``, when set
                (too many claims): no verifier with that limit would take it.
        """
        if not isinstance(subject, str) or not 0 < len(subject) <= MAX_SUBJECT_CHARS:
            raise ValueError(f"subject must be a string of 1 to {MAX_SUBJECT_CHARS} characters")
        payload: dict[str, Any] = {"jti": _new_jti(), "sub": subject}
        if audience is not None:
            if not isinstance(audience, str) or not 0 < len(audience) <= MAX_AUDIENCE_CHARS:
                raise ValueError(
                    f"audience must be a string of 1 to {MAX_AUDIENCE_CHARS} characters"
                )
            payload["aud"] = audience
        if client_ip is not None:
            payload["ip"] = normalize_ip(client_ip)
        if claims:
            payload["ext"] = dict(claims)
        token = self.sign_payload(payload)
        if self.max_token_bytes is not None and len(token) > self.max_token_bytes:
            raise ValueError(
                f"the ticket would be {len(token)} characters, over max_token_bytes "
                f"({self.max_token_bytes}): send fewer or smaller claims"
            )
        return token

    def sign_payload(self, payload: Mapping[str, Any]) -> str:
        """Sign an arbitrary JSON object exactly as the stock serializer would.

        Prefer :meth:`issue`; this is the format's primitive, for test vectors
        and other tooling.
        """
        data = _ENCODER.encode(payload).encode("utf-8")
        segment = base64_encode(data)
        if len(data) > COMPRESS_MIN_BYTES:
            # Stock itsdangerous' rule, applied only where it can pay off:
            # zlib costs more than the rest of an issue put together.
            compressed = zlib.compress(data)
            if len(compressed) < len(data) - 1:
                segment = b"." + base64_encode(compressed)
        value = segment + b"." + base64_encode(int_to_bytes(int(self._clock())))
        signature = base64_encode(self._mac.sign(value))
        return (value + b"." + signature).decode("ascii")


class TicketVerifier:
    """Verify tickets: size, signature (every key), age, schema, bindings.

    The replay claim is not made here: it is the caller's last step, so a
    ticket that fails any check below never consumes a replay entry.

    Args:
        secret_keys: Every key that may have signed a live ticket.
        salt: Must match the issuer's.
        max_age: Seconds a ticket lives after its timestamp.
        leeway: Seconds of clock skew tolerated in both directions.
        max_token_bytes: Tickets longer than this are refused before decoding.
        clock: Returns the current time in seconds; injected by tests.

    Raises:
        WeakSecretError: a key is missing, not a string, or too short.
    """

    __slots__ = ("_clock", "_macs", "_plain", "leeway", "max_age", "max_token_bytes", "salt")

    def __init__(
        self,
        secret_keys: SecretKeys,
        *,
        salt: str = SALT,
        max_age: int = DEFAULT_MAX_AGE,
        leeway: int = DEFAULT_LEEWAY,
        max_token_bytes: int = DEFAULT_MAX_TOKEN_BYTES,
        clock: Callable[[], float] = time.time,
    ) -> None:
        _check_positive("max_age", max_age)
        _check_positive("max_token_bytes", max_token_bytes)
        if not 0 <= leeway < math.inf:
            raise ValueError("leeway must be a finite number, zero or more")
        salt_bytes = _salt_bytes(salt)
        self.salt = salt
        self.max_age = max_age
        self.leeway = leeway
        self.max_token_bytes = max_token_bytes
        # Newest first: the common case matches on the first comparison.
        self._macs = tuple(
            _HmacSha256(_derive(k, salt_bytes)) for k in reversed(_coerce_keys(secret_keys))
        )
        newest = self._macs[0]
        self._plain = (
            None if _PlainVerifier is None else _PlainVerifier(newest._inner, newest._outer)
        )
        self._clock = clock

    def verify(
        self,
        token: object,
        *,
        audience: str | Callable[[], str | None] | None = None,
        client_ip: str | Callable[[], str | None] | None = None,
    ) -> Ticket:
        """Verify ``token`` and return the :class:`Ticket` it carries.

        Args:
            token: The ticket as presented by the client.
            audience: The route or channel being opened, or a function that
                returns it (called only for a ticket bound to an audience). A
                ticket bound to an audience is refused anywhere else.
            client_ip: The requesting client's address, or a function that
                returns it (called only for a ticket bound to an address, so
                a costly lookup is skipped for the others). A ticket bound to an
                address is refused from any other (or from an unknown one).

        Raises:
            MissingTicket: ``token`` is empty or not a string.
            TicketTooLarge: ``token`` exceeds ``max_token_bytes``.
            MalformedTicket: not in format v1, or the payload is invalid.
            BadSignature: no configured key signed it.
            TicketExpired: older than ``max_age + leeway``.
            TicketNotYetValid: dated more than ``leeway`` in the future.
            AudienceMismatch: bound to another audience.
            IPMismatch: bound to another client address.
        """
        ticket = self._verified(token)
        if ticket.audience is not None or ticket.client_ip is not None:
            self._check_bindings(ticket, audience, client_ip)
        return ticket

    def _verified(self, token: object) -> Ticket:
        """:meth:`verify` but for the bindings: signature, age and payload only.

        The caller must then check ``audience`` and ``client_ip`` itself
        (:meth:`_check_bindings`): the handshake guard does, with the route
        and address it looks up only for a bound ticket.
        """
        # The C accelerator (when built) checks a ticket signed by the newest
        # key in one call: a plain ticket's (jti, sub, issued_at), another
        # authentic ticket's issued_at, or None for anything else, which the
        # Python path then decides; it alone refuses. Both paths give the same
        # answers (tests/test_speedups.py).
        fast = self._plain.verify(token, self.max_token_bytes) if self._plain else None
        payload_segment: str | None
        if fast is None:
            payload_segment, issued_at = self._authentic(token)
        elif isinstance(fast, int):
            issued_at = fast
            payload_segment = token[: -_SIG_CHARS - 1].rpartition(".")[0]  # type: ignore[index]
        else:
            jti, subject, issued_at = fast
            payload_segment = None
        age = self._clock() - issued_at
        if age > self.max_age + self.leeway:
            raise TicketExpired()
        if age < -self.leeway:
            raise TicketNotYetValid()
        if payload_segment is None:
            expires_at = issued_at + self.max_age + self.leeway
            return _make_ticket(jti, subject, issued_at, expires_at, None, None, _NO_CLAIMS)

        payload = _load_payload(payload_segment)
        if payload.__class__ is tuple:
            # A plain ticket (the usual kind): its jti is already known to be
            # 32 hex digits, and it carries no audience, address or claims.
            jti, subject = payload
            if not 0 < len(subject) <= MAX_SUBJECT_CHARS:
                raise MalformedTicket("bad sub")
            expires_at = issued_at + self.max_age + self.leeway
            return _make_ticket(jti, subject, issued_at, expires_at, None, None, _NO_CLAIMS)
        return self._ticket(payload, issued_at)

    def _authentic(self, token: object) -> tuple[str, int]:
        """The payload segment and timestamp of a ticket one of the keys signed.

        Raises:
            MissingTicket, TicketTooLarge, MalformedTicket, BadSignature.
        """
        if not isinstance(token, str) or not token:
            raise MissingTicket()
        if len(token) > self.max_token_bytes:
            raise TicketTooLarge()
        value, _, sig_segment = token.rpartition(".")
        if len(sig_segment) != _SIG_CHARS or not token.isascii():
            raise _refusal(token)
        signed = value.encode("ascii")
        if not _well_formed(signed):
            raise MalformedTicket()
        # Compare base64url text with the canonical spelling of the expected
        # signature: cheaper than decoding, it refuses the malleable spellings
        # of a signature's last character, and a match proves the segment is
        # in the alphabet (what the format's pattern would have checked).
        presented = sig_segment.encode("ascii")
        for mac in self._macs:
            expected = b2a_base64(mac.sign(signed), newline=False)[:_SIG_CHARS]
            if hmac.compare_digest(expected.translate(_TO_URLSAFE), presented):
                break
        else:
            raise _refusal(token)
        payload_segment, _, ts_segment = value.rpartition(".")
        issued_at = _TS_CACHE.get(ts_segment)  # _timestamp's first step, inline
        if issued_at is None:
            issued_at = _timestamp(ts_segment)
        return payload_segment, issued_at

    def _ticket(self, payload: Any, issued_at: int) -> Ticket:
        if payload.__class__ is not dict:
            raise MalformedTicket("payload is not an object")
        get = payload.get
        jti = get("jti")
        subject = get("sub")
        audience = get("aud")
        client_ip = get("ip")
        claims = get("ext")
        if jti.__class__ is not str or len(jti) != 32 or jti.strip(_HEX):
            raise MalformedTicket("bad jti")
        if subject.__class__ is not str or not 0 < len(subject) <= MAX_SUBJECT_CHARS:
            raise MalformedTicket("bad sub")
        if audience is not None and (
            audience.__class__ is not str or not 0 < len(audience) <= MAX_AUDIENCE_CHARS
        ):
            raise MalformedTicket("bad aud")
        if client_ip is not None:
            try:
                client_ip = normalize_ip(client_ip)
            except (ValueError, AttributeError) as exc:
                raise MalformedTicket("bad ip") from exc
        if claims is None:
            view = _NO_CLAIMS
        elif claims.__class__ is not dict:
            raise MalformedTicket("bad ext")
        else:
            view = MappingProxyType(claims)
        return _make_ticket(
            jti,
            subject,
            issued_at,
            issued_at + self.max_age + self.leeway,
            audience,
            client_ip,
            view,
        )

    @staticmethod
    def _check_bindings(
        ticket: Ticket,
        audience: str | Callable[[], str | None] | None,
        client_ip: str | Callable[[], str | None] | None,
    ) -> None:
        if ticket.audience is not None:
            if callable(audience):
                audience = audience()
            if audience is None or not hmac.compare_digest(
                comparable_bytes(ticket.audience), comparable_bytes(audience)
            ):
                raise AudienceMismatch()
        if ticket.client_ip is not None:
            if callable(client_ip):
                client_ip = client_ip()
            try:
                presented = normalize_ip(client_ip) if client_ip else ""
            except ValueError:
                presented = ""
            if not hmac.compare_digest(
                comparable_bytes(ticket.client_ip), comparable_bytes(presented)
            ):
                raise IPMismatch()
