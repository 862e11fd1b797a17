"""The C accelerator (``sanic_wsauth/_speedups.c``) against the pure-Python path.

``TicketVerifier`` asks the accelerator first; it answers a plain ticket's
``(jti, subject, issued_at)``, another authentic ticket's ``issued_at``, or
``None``, and only the Python path refuses. These tests hold the two paths to
the same outcome (the same ticket, or the same error and reason) for real
tickets, for mutations of them, for values signed with the real key that
probe each branch of the C code, and for any input at all; and they check
that the accelerator is built and really used, so a build that silently lost
it fails here rather than running slower unnoticed.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
import sysconfig
import zlib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from itsdangerous import Signer
from itsdangerous.encoding import base64_encode, int_to_bytes

from sanic_wsauth import TicketIssuer, TicketVerifier, WSAuthError, tokens
from sanic_wsauth.tokens import MAX_SUBJECT_CHARS, stock_serializer

from ._support import new_secret
from .conftest import REQUIRE_ALL, skip_or_fail
from .test_fuzz import FUZZ, MUTATIONS, mutate

if os.environ.get("SANIC_WSAUTH_NO_EXTENSIONS"):
    pytest.skip(
        "the accelerator is switched off (SANIC_WSAUTH_NO_EXTENSIONS)", allow_module_level=True
    )

try:
    from sanic_wsauth._speedups import PlainVerifier
except ImportError:  # pragma: no cover - depends on the build
    if REQUIRE_ALL:
        raise  # CI builds it: a lost build fails the run
    pytest.skip(
        "the C accelerator is not built (it needs a C compiler and the Python headers; "
        "then reinstall: make clean install)",
        allow_module_level=True,
    )

SECRET = new_secret()
OLD = new_secret()
NOW = 1_800_000_000
JTI = "0123456789abcdef0123456789abcdef"

ISSUER = TicketIssuer(SECRET, clock=lambda: NOW)
OLD_ISSUER = TicketIssuer(OLD, clock=lambda: NOW)
#: The signer stock itsdangerous derives for format v1: signs any value with the real key.
SIGNER = stock_serializer(SECRET).make_signer(tokens.SALT)


def _pair(**kwargs: Any) -> tuple[TicketVerifier, TicketVerifier]:
    """The same verifier twice: with the accelerator, and on the Python path alone."""
    fast = TicketVerifier([OLD, SECRET], clock=lambda: NOW + 3, **kwargs)
    slow = TicketVerifier([OLD, SECRET], clock=lambda: NOW + 3, **kwargs)
    slow._plain = None
    assert fast._plain is not None
    return fast, slow


FAST, SLOW = _pair()


def _outcome(verifier: TicketVerifier, token: object) -> tuple[str, Any]:
    try:
        return "ticket", verifier.verify(token, audience="/ws", client_ip="127.0.0.1")
    except WSAuthError as exc:
        return "refused", (type(exc), exc.reason, str(exc))


def _same(token: object, fast: TicketVerifier = FAST, slow: TicketVerifier = SLOW) -> Any:
    expected = _outcome(slow, token)
    got = _outcome(fast, token)
    assert got == expected, repr(token)
    if got[0] == "ticket":
        # Equal is not enough: 1 == 1.0 == True, and a str subclass equals its text.
        for ticket in (got[1], expected[1]):
            assert type(ticket.jti) is str and type(ticket.subject) is str, repr(token)
            assert type(ticket.issued_at) is int and type(ticket.expires_at) is int, repr(token)
    return expected


def _signed(value: bytes) -> str:
    """``value`` signed with the real key by stock itsdangerous (no timestamp added);
    ``value`` may hold any UTF-8 text, as a foreign issuer's might."""
    return Signer.sign(SIGNER, value).decode("utf-8")


def _b64(data: bytes) -> bytes:
    return base64_encode(data)


def _ts(seconds: int = NOW) -> bytes:
    return _b64(int_to_bytes(seconds))


def _plain(subject: bytes = b"alice", jti: bytes = JTI.encode()) -> bytes:
    return b'{"jti":"' + jti + b'","sub":"' + subject + b'"}'


# -- built, and used ----------------------------------------------------------------------


def test_the_accelerator_is_built_and_used() -> None:
    """CI builds it: a lost build (no compiler, a broken setup.py) fails here."""
    assert tokens.SPEEDUPS is True
    assert isinstance(TicketVerifier(SECRET)._plain, PlainVerifier)


def test_a_plain_ticket_is_read_in_one_call() -> None:
    token = ISSUER.issue("alice")
    assert FAST._plain is not None
    jti, subject, issued_at = FAST._plain.verify(token, 4096)  # type: ignore[misc]
    assert (subject, issued_at) == ("alice", NOW)
    ticket = FAST.verify(token)
    assert (ticket.jti, ticket.subject, ticket.issued_at) == (jti, "alice", NOW)
    assert ticket == SLOW.verify(token)
    assert ticket.expires_at == NOW + FAST.max_age + FAST.leeway


@pytest.mark.parametrize(
    "kwargs",
    [
        {"audience": "/ws"},
        {"client_ip": "127.0.0.1"},
        {"claims": {"role": "admin"}},
        {"claims": {"roles": ["reader"] * 80}},  # compressed: ".eJ..."
    ],
    ids=["audience", "address", "claims", "compressed"],
)
def test_another_authentic_ticket_gives_its_timestamp(kwargs: dict[str, Any]) -> None:
    token = ISSUER.issue("bob", **kwargs)
    assert FAST._plain is not None
    assert FAST._plain.verify(token, 4096) == NOW
    assert _same(token)[0] == "ticket"


@pytest.mark.parametrize(
    "subject", ["ü" * 40, 'say "hi"', "back\\slash", "tab\there", "\x7f"], ids=repr
)
def test_subjects_the_plain_form_cannot_hold_go_to_python(subject: str) -> None:
    token = ISSUER.issue(subject)
    assert FAST._plain is not None
    assert FAST._plain.verify(token, 4096) == NOW
    assert _same(token)[1].subject == subject


def test_refusals_are_left_to_python() -> None:
    token = ISSUER.issue("alice")
    tampered = token[:-1] + ("A" if token[-1] != "A" else "B")
    assert FAST._plain is not None
    for bad in (tampered, OLD_ISSUER.issue("alice"), token + "x", "", "a.b.c", 42, None, b"x"):
        assert FAST._plain.verify(bad, 4096) is None
        _same(bad)
    # Longer than max_chars: None, and the Python path says too_large.
    assert FAST._plain.verify(token, len(token) - 1) is None


def test_an_older_key_still_verifies() -> None:
    """Only the newest key is in C; a ticket of a rotated-out key takes the Python path."""
    token = OLD_ISSUER.issue("alice")
    assert _same(token)[1].subject == "alice"


@pytest.mark.parametrize("offset", [-1, 0, 1])
def test_max_token_bytes_at_its_boundary(offset: int) -> None:
    token = ISSUER.issue("alice")
    fast, slow = _pair(max_token_bytes=len(token) + offset)
    kind, _ = _same(token, fast, slow)
    assert kind == ("refused" if offset < 0 else "ticket")


@pytest.mark.parametrize("limit", [4096.0, 123.5, 10**30, True])
def test_max_token_bytes_of_other_number_types(limit: Any) -> None:
    """A float or a huge int limit: the same answers (a float goes to Python)."""
    token = ISSUER.issue("alice")
    fast, slow = _pair()
    fast.max_token_bytes = slow.max_token_bytes = limit
    _same(token, fast, slow)
    _same(token + "x" * 200, fast, slow)


@pytest.mark.parametrize("age", [-100, -6, -5, 0, 34, 35, 36, 10**6])
def test_age_is_checked_on_both_paths(age: int) -> None:
    token = TicketIssuer(SECRET, clock=lambda: NOW - age).issue("alice")
    _same(token)


def test_str_subclasses_and_lookalike_text() -> None:
    class Text(str):
        pass

    token = ISSUER.issue("alice")
    assert _same(Text(token))[0] == "ticket"
    _same(token.replace("e", "\u0435"))  # a Cyrillic e: not ASCII
    _same(token + "\udc80")


class _Long(str):
    def __len__(self) -> int:
        return 10**6


class _NotAscii(str):
    def isascii(self) -> bool:
        return False


class _Split(str):
    def rpartition(self, sep: str) -> tuple[str, str, str]:  # type: ignore[override]
        return ("", sep, "x")


class _Slice(str):
    def __getitem__(self, key: Any) -> str:  # type: ignore[override]
        return "." + str.__getitem__(self, key)


class _Always(int):
    def __lt__(self, other: object) -> bool:
        return True

    def __gt__(self, other: object) -> bool:
        return True


@pytest.mark.parametrize("kind", [_Long, _NotAscii, _Split, _Slice], ids=lambda k: k.__name__)
@pytest.mark.parametrize("bound", [{}, {"audience": "/ws"}], ids=["plain", "audience"])
def test_str_subclasses_that_change_what_python_sees(
    kind: type[str], bound: dict[str, Any]
) -> None:
    """The Python path calls a subclass's own methods; C takes only exact str (else None)."""
    token = kind(ISSUER.issue("alice", **bound))
    assert FAST._plain is not None
    assert FAST._plain.verify(token, 4096) is None
    _same(token)


def test_an_int_subclass_limit_goes_to_python() -> None:
    token = ISSUER.issue("alice")
    fast, slow = _pair()
    fast.max_token_bytes = slow.max_token_bytes = _Always(4096)
    assert fast._plain is not None
    assert fast._plain.verify(token, _Always(4096)) is None
    assert _same(token, fast, slow)[0] == "refused"  # "longer" than any limit


def test_the_type_refuses_misuse() -> None:
    with pytest.raises(TypeError):
        PlainVerifier(1)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        PlainVerifier(1, 2, inner=3)  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="not initialised"):
        PlainVerifier.__new__(PlainVerifier).verify("x", 1)
    with pytest.raises(TypeError):
        FAST._plain.verify("x")  # type: ignore[call-arg, union-attr]
    assert FAST._plain.verify(ISSUER.issue("alice"), "4096") is None  # type: ignore[arg-type, union-attr]
    # Hash states that are not SHA-256: an error, never a ticket.
    odd = PlainVerifier(zlib.compressobj(), zlib.compressobj())
    with pytest.raises(AttributeError):
        odd.verify(ISSUER.issue("alice"), 4096)


# -- every branch of the C code, with values signed by the real key ------------------------

_NON_CANONICAL_TS = _ts()[:-1] + {b"A": b"B"}.get(_ts()[-1:], b"A")

CRAFTED: dict[str, bytes] = {
    "plain": _b64(_plain()) + b"." + _ts(),
    "jti upper-case": _b64(_plain(jti=JTI.upper().encode())) + b"." + _ts(),
    "jti 31": _b64(_plain(jti=JTI[:31].encode())) + b"." + _ts(),
    "jti 33": _b64(_plain(jti=JTI.encode() + b"0")) + b"." + _ts(),
    "jti not hex": _b64(_plain(jti=b"g" + JTI[1:].encode())) + b"." + _ts(),
    "subject max": _b64(_plain(b"s" * MAX_SUBJECT_CHARS)) + b"." + _ts(),
    "subject over max": _b64(_plain(b"s" * (MAX_SUBJECT_CHARS + 1))) + b"." + _ts(),
    "subject empty": _b64(_plain(b"")) + b"." + _ts(),
    "subject quote": _b64(_plain(b'a"b')) + b"." + _ts(),
    "subject escape": _b64(_plain(b"a\\u0041")) + b"." + _ts(),
    "subject control": _b64(_plain(b"a\x1fb")) + b"." + _ts(),
    "subject DEL": _b64(_plain(b"a\x7fb")) + b"." + _ts(),
    "subject UTF-8": _b64(_plain("ü".encode())) + b"." + _ts(),
    "subject not UTF-8": _b64(_plain(b"a\xffb")) + b"." + _ts(),
    "keys swapped": _b64(b'{"sub":"alice","jti":"' + JTI.encode() + b'"}') + b"." + _ts(),
    "spaces": _b64(b'{"jti": "' + JTI.encode() + b'", "sub": "alice"}') + b"." + _ts(),
    "trailing space": _b64(_plain() + b" ") + b"." + _ts(),
    "two objects": _b64(_plain() + b"{}") + b"." + _ts(),
    "truncated": _b64(_plain()[:-1]) + b"." + _ts(),
    "extra key": _b64(_plain()[:-1] + b',"aud":"/ws"}') + b"." + _ts(),
    "duplicate sub": _b64(_plain()[:-1] + b',"sub":"bob"}') + b"." + _ts(),
    "not an object": _b64(b'["' + JTI.encode() + b'","alice"]') + b"." + _ts(),
    "payload 4k+1": _b64(_plain())[:-2] + b"." + _ts(),
    "payload padded": _b64(_plain()) + b"==." + _ts(),
    "payload non-canonical": _b64(_plain()[:-1])[:-1] + b"_" + b"." + _ts(),
    "payload empty": b"." + _ts(),
    "payload huge": _b64(_plain(b"s" * 5000)) + b"." + _ts(),
    "compressed": b"." + _b64(zlib.compress(_plain())) + b"." + _ts(),
    "compressed empty": b".." + _ts(),
    "two leading dots": b".." + _b64(zlib.compress(_plain())) + b"." + _ts(),
    "three segments": _b64(_plain()) + b"." + _ts() + b"." + _ts(),
    "no timestamp": _b64(_plain()) + b".",
    "no dot": _b64(_plain()),
    "timestamp non-canonical": _b64(_plain()) + b"." + _NON_CANONICAL_TS,
    "timestamp 4k+1": _b64(_plain()) + b"." + b"AAAAB",
    "timestamp zero": _b64(_plain()) + b"." + _ts(0),
    "timestamp 8 bytes": _b64(_plain()) + b"." + _b64(b"\xff" * 8),
    "timestamp 9 bytes": _b64(_plain()) + b"." + _b64(b"\x00" + int_to_bytes(NOW).rjust(8, b"\0")),
    "timestamp padded": _b64(_plain()) + b"." + _ts() + b"=",
    "timestamp plus": _b64(_plain()) + b"." + _ts().replace(b"_", b"/").replace(b"-", b"+"),
}


@pytest.mark.parametrize("value", CRAFTED.values(), ids=CRAFTED.keys())
def test_values_signed_with_the_real_key(value: bytes) -> None:
    _same(_signed(value))


def test_crafted_values_reach_the_branches_they_name() -> None:
    """Not a tautology: the cases above do exercise C's three answers."""
    assert FAST._plain is not None
    answers = {name: FAST._plain.verify(_signed(v), 10**6) for name, v in CRAFTED.items()}
    assert isinstance(answers["plain"], tuple)
    assert isinstance(answers["subject max"], tuple)
    assert answers["subject over max"] == NOW
    assert answers["jti upper-case"] == NOW
    assert answers["compressed"] == NOW
    assert answers["timestamp 8 bytes"] == (JTI, "alice", 2**64 - 1)
    assert answers["timestamp non-canonical"] is None
    assert answers["payload 4k+1"] == NOW
    assert answers["three segments"] is None
    assert answers["timestamp 9 bytes"] is None


# -- hypothesis: any ticket, any mutation, any input ------------------------------------

#: The fuzz campaign's settings: 1,500 derandomized examples per test.
DIFF = FUZZ

SUBJECTS = st.text(
    st.characters(exclude_categories=["Cs"]), min_size=1, max_size=MAX_SUBJECT_CHARS
) | st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=300)


@DIFF
@given(
    subject=SUBJECTS,
    bound=st.sampled_from(
        [{}, {"audience": "/ws"}, {"client_ip": "127.0.0.1"}, {"claims": {"a": 1}}]
    ),
    old=st.booleans(),
    rnd=st.randoms(use_true_random=False),
    rounds=st.integers(0, 3),
)
def test_issued_and_mutated_tickets(
    subject: str, bound: dict[str, Any], old: bool, rnd: random.Random, rounds: int
) -> None:
    if len(subject) > MAX_SUBJECT_CHARS:
        # Over the limit the issuer refuses; sign the payload directly instead.
        token = ISSUER.sign_payload({"jti": JTI, "sub": subject})
    else:
        token = (OLD_ISSUER if old else ISSUER).issue(subject, **bound)
    _same(mutate(token, rnd, rounds))


#: Timestamps: mostly live ones (the age check comes before the payload is
#: read, so an expired ticket would hide a payload difference), some of any bytes.
TIMESTAMPS = st.one_of(
    st.just(int_to_bytes(NOW)), st.just(int_to_bytes(NOW - 20)), st.binary(max_size=12)
)


@DIFF
@given(st.binary(max_size=400), st.sampled_from([b"", b"."]), TIMESTAMPS)
def test_any_payload_signed_with_the_real_key(payload: bytes, prefix: bytes, ts: bytes) -> None:
    _same(_signed(prefix + _b64(payload) + b"." + _b64(ts)))


_EDIT_BYTES = b'{}":,\\ 0af\x00\x7f\xc3\xa9'


@DIFF
@given(
    subject=st.binary(min_size=0, max_size=260),
    edits=st.lists(
        st.tuples(
            st.sampled_from(["replace", "delete", "insert", "flip"]),
            st.integers(0, 400),
            st.sampled_from(list(_EDIT_BYTES)) | st.integers(0, 255),
        ),
        max_size=3,
    ),
    ts=TIMESTAMPS,
)
def test_near_plain_payloads_signed_with_the_real_key(
    subject: bytes, edits: list[tuple[str, int, int]], ts: bytes
) -> None:
    """A plain payload changed a byte or three: what the C reads itself."""
    text = bytearray(_plain(subject))
    for kind, at, byte in edits:
        i = at % (len(text) + 1)
        if kind == "insert":
            text.insert(i, byte)
        elif i < len(text):
            if kind == "delete":
                del text[i]
            elif kind == "replace":
                text[i] = byte
            else:
                text[i] ^= 1 << (byte % 8)
    _same(_signed(_b64(bytes(text)) + b"." + _b64(ts)))


@DIFF
@given(
    st.text(
        st.sampled_from("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=+/ é"),
        max_size=200,
    )
)
def test_any_text_signed_with_the_real_key(value: str) -> None:
    _same(_signed(value.encode("utf-8")))
    _same(_signed(value.encode("utf-8") + b"." + _ts()))


@DIFF
@given(st.one_of(st.text(max_size=300), st.binary(max_size=50), st.none(), st.integers()))
def test_any_input(token: Any) -> None:
    _same(token)


def test_every_mutation_kind_is_exercised() -> None:
    rnd = random.Random(7)
    token = ISSUER.issue("alice")
    for mutation in MUTATIONS:
        for _ in range(50):
            _same(mutation(token, rnd))


# -- no leaked references ---------------------------------------------------------------


def test_no_reference_or_memory_leak() -> None:
    """Every answer and the error paths, many times: counts and memory stay flat."""
    import gc
    import tracemalloc

    class Failing:
        def copy(self) -> Any:
            raise RuntimeError("no copy")

    failing = PlainVerifier(Failing(), Failing())
    fast = FAST._plain
    assert fast is not None
    inputs = [
        ISSUER.issue("alice"),  # tuple
        ISSUER.issue("bob", audience="/ws"),  # issued_at
        ISSUER.issue("alice")[:-1] + "A",  # None, after an HMAC
        "x" * 100,  # None, before one
    ]
    limit = 4096

    def run(n: int) -> None:
        for _ in range(n):
            for token in inputs:
                fast.verify(token, limit)
            with pytest.raises(RuntimeError):
                failing.verify(inputs[0], limit)

    run(200)
    gc.collect()
    watched = (*inputs, limit, fast, failing, None)  # update() answers None
    counts = [sys.getrefcount(obj) for obj in watched]
    tracemalloc.start()
    try:
        run(200)
        before = tracemalloc.get_traced_memory()[0]
        run(5000)
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert [sys.getrefcount(obj) for obj in watched] == counts
    assert grown < 20_000, grown  # 25,000 calls; one leaked object each would be far more


# -- switched off ----------------------------------------------------------------------


def test_switched_off_by_the_environment() -> None:
    """SANIC_WSAUTH_NO_EXTENSIONS=1: the Python path alone, with the same answers."""
    token = ISSUER.issue("alice")
    script = (
        "import sys\n"
        "from sanic_wsauth import tokens, TicketVerifier\n"
        "v = TicketVerifier(sys.argv[1], clock=lambda: int(sys.argv[3]))\n"
        "print(tokens.SPEEDUPS, v._plain, v.verify(sys.argv[2]).subject)\n"
    )
    env = {**os.environ, "SANIC_WSAUTH_NO_EXTENSIONS": "1"}
    out = subprocess.run(
        [sys.executable, "-c", script, SECRET, token, str(NOW)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.split()
    assert out == ["False", "None", "alice"]


# -- memory safety: the same corpus against a sanitizer build ------------------------------

SOURCE = Path(tokens.__file__).with_name("_speedups.c")


def _sanitized_build(tmp_path: Path, source: str) -> tuple[Path, dict[str, str]]:
    """Build ``source`` with ASan and UBSan; the path and the environment to run it."""
    compiler = shutil.which("gcc")
    if compiler is None:
        skip_or_fail("gcc is not on PATH (apt-get install gcc): the sanitizer build needs it")
        raise AssertionError("unreachable")
    runtimes = [
        subprocess.run(
            [compiler, f"-print-file-name={name}"], capture_output=True, text=True, check=True
        ).stdout.strip()
        for name in ("libasan.so", "libubsan.so")
    ]
    c_file = tmp_path / "_speedups.c"
    c_file.write_text(source)
    built = tmp_path / "_speedups.so"
    include = sysconfig.get_paths()["include"]
    subprocess.run(
        [compiler, "-fsanitize=address,undefined", "-fno-sanitize-recover=all"]
        + ["-fno-omit-frame-pointer", "-g", "-O1", "-fPIC", "-shared", "-Wall", "-Werror"]
        + [f"-I{include}", str(c_file), "-o", str(built)],
        check=True,
        timeout=120,
    )
    env = {
        **os.environ,
        "LD_PRELOAD": " ".join(runtimes),
        "ASAN_OPTIONS": "detect_leaks=0",
        "UBSAN_OPTIONS": "print_stacktrace=1",
    }
    env.pop("SANIC_WSAUTH_NO_EXTENSIONS", None)
    return built, env


def _run_corpus(built: Path, env: dict[str, str], rounds: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tests._asan_corpus", str(built), str(rounds)],
        cwd=Path(__file__).resolve().parent.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.slow
def test_no_memory_error_under_address_sanitizer(tmp_path: Path) -> None:
    built, env = _sanitized_build(tmp_path, SOURCE.read_text())
    result = _run_corpus(built, env, 3000)
    assert result.returncode == 0, result.stderr[-4000:]
    assert result.stdout.split() == ["checked", str(len(CRAFTED) + 2 * 3000)]


@pytest.mark.slow
def test_the_sanitizer_run_catches_an_overflow(tmp_path: Path) -> None:
    """The check above is not vacuous: a copy whose payload buffer is one byte
    short for its declared capacity is caught (a 257-character subject fills it)."""
    broken = SOURCE.read_text().replace(
        "b64url_decode(s, dot, text, sizeof text)", "b64url_decode(s, dot, text, sizeof text + 1)"
    )
    assert broken != SOURCE.read_text()
    built, env = _sanitized_build(tmp_path, broken)
    result = _run_corpus(built, env, 10)
    assert result.returncode != 0
    assert "stack-buffer-overflow" in result.stderr
