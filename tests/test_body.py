"""The strict body reader behind the ticket endpoint's audience (ext/body.py).

Well-formed multipart bodies come from real encoders (httpx here; Chromium's
FormData in test_browser.py) and must read exactly as Sanic's own parser reads
them; anything that is not well formed must be a ValueError, never a body read
in part.
"""

from __future__ import annotations

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sanic.headers import parse_content_header
from sanic.request.form import parse_multipart_form

from sanic_wsauth.ext.body import body_values, multipart_fields

B = b"xyz"
FIELD = b'--xyz\r\nContent-Disposition: form-data; name="audience"\r\n\r\n/ws/x\r\n'
CLOSE = b"--xyz--\r\n"
WELL_FORMED = FIELD + CLOSE

# Field names as browsers send them: no quote, CR or LF (they percent-encode
# those), no backslash (httpx escapes it, browsers do not), no control characters.
names = st.text(
    st.characters(blacklist_categories=("Cc", "Cs"), blacklist_characters='"\\'),
    min_size=1,
    max_size=20,
)
texts = st.text(st.characters(codec="utf-8"), max_size=40)
filenames = st.text(
    st.characters(blacklist_categories=("Cc", "Cs"), blacklist_characters='"\\/'),
    min_size=1,
    max_size=20,
)


def encoded(
    data: list[tuple[str, str]], files: list[tuple[str, str, bytes]]
) -> tuple[bytes, bytes]:
    """A body and its boundary, as httpx encodes them."""
    request = httpx.Request(
        "POST",
        "http://127.0.0.1/",
        data={name: [value for n, value in data if n == name] for name, _ in data},
        files=[
            (name, (filename, content, "application/octet-stream"))
            for name, filename, content in files
        ],
    )
    _, options = parse_content_header(request.headers["content-type"])
    return request.read(), str(options["boundary"]).encode()


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.lists(st.tuples(names, texts), max_size=4),
    # httpx writes multipart only with at least one file.
    files=st.lists(st.tuples(names, filenames, st.binary(max_size=40)), min_size=1, max_size=3),
)
def test_bodies_from_a_real_encoder_read_as_sanic_reads_them(
    data: list[tuple[str, str]], files: list[tuple[str, str, bytes]]
) -> None:
    body, boundary = encoded(data, files)
    parts = multipart_fields(body, boundary)
    fields = [(name, content.decode()) for name, is_file, _, content in parts if not is_file]
    uploads = [(name, content) for name, is_file, _, content in parts if is_file]
    # httpx sends the fields grouped by name, then the files in order.
    assert sorted(fields) == sorted(data)
    assert uploads == [(name, content) for name, _, content in files]
    sanic_fields, sanic_files = parse_multipart_form(body, boundary)
    assert {k: sorted(v) for k, v in sanic_fields.items()} == {
        k: sorted(v for n, v in fields if n == k) for k in {n for n, _ in fields}
    }
    assert {k: [f.body for f in v] for k, v in sanic_files.items()} == {
        k: [c for n, c in uploads if n == k] for k in {n for n, _ in uploads}
    }


@settings(max_examples=300)
@given(st.binary(max_size=200), st.integers(0, len(WELL_FORMED)), st.integers(0, 8))
def test_any_damaged_body_reads_or_raises_value_error(junk: bytes, at: int, cut: int) -> None:
    # Splice junk into a well-formed body and cut some bytes: the reader
    # either reads the result or raises ValueError (the endpoint's 400).
    body = WELL_FORMED[:at] + junk + WELL_FORMED[at + cut :]
    try:
        parts = multipart_fields(body, B)
    except ValueError:
        return
    for name, _, _, content in parts:
        assert isinstance(name, str) and isinstance(content, bytes)


def test_a_well_formed_body_with_preamble_epilogue_and_padding() -> None:
    body = b"preamble\r\n" + FIELD.replace(b"--xyz\r\n", b"--xyz \t\r\n") + b"--xyz--  \r\nepilogue"
    assert multipart_fields(body, B) == [("audience", False, None, b"/ws/x")]


def test_names_and_types_are_read_case_insensitively() -> None:
    body = (
        b"--xyz\r\nCONTENT-DISPOSITION: Form-Data; NAME=audience\r\n"
        b"content-type: text/plain; Charset=latin-1\r\n\r\n/ws/\xe9\r\n" + CLOSE
    )
    assert multipart_fields(body, B) == [
        ("audience", False, " text/plain; Charset=latin-1", b"/ws/\xe9")
    ]
    assert body_values("multipart/form-data", {"boundary": "xyz"}, body, "audience") == ["/ws/é"]


@pytest.mark.parametrize(
    "body",
    [
        # Another field's value, or a file's name, that spells the field's
        # header is content, not a field (the old heuristic refused these).
        b'--xyz\r\nContent-Disposition: form-data; name="note"\r\n\r\nname="audience"\r\n' + CLOSE,
        b'--xyz\r\nContent-Disposition: form-data; name="f"; filename="name=audience"\r\n\r\n'
        b"x\r\n" + CLOSE,
        # A quoted value may hold a semicolon and a backslash (browsers send it as is).
        b'--xyz\r\nContent-Disposition: form-data; name="a;b\\"\r\n\r\nx\r\n' + CLOSE,
        # Only the closing delimiter: no fields.
        CLOSE,
    ],
    ids=["value-spells-it", "filename-spells-it", "semicolon-backslash", "empty"],
)
def test_bodies_without_the_field_read_as_none(body: bytes) -> None:
    assert body_values("multipart/form-data", {"boundary": "xyz"}, body, "audience") == []


@pytest.mark.parametrize(
    "body",
    [
        WELL_FORMED.removesuffix(CLOSE),  # no closing delimiter
        WELL_FORMED.replace(b"/ws/x\r\n--xyz--", b"/ws/x--xyz--"),
        WELL_FORMED.replace(b"\r\n", b"\n"),  # bare LF line ends
        WELL_FORMED.replace(b"\r\n\r\n", b"\r\n"),  # no blank line after the headers
        FIELD.replace(b"\r\n\r\n", b"\r\nX-Folded: a\r\n b\r\n\r\n") + CLOSE,  # a folded header
        FIELD.replace(b"name=", b"NAME=").removesuffix(b"\r\n"),  # upper case and unclosed
        FIELD.replace(b'name="audience"', b"name*=utf-8''audience") + CLOSE,
        FIELD.replace(b'name="audience"', b'name="audience"; name="other"') + CLOSE,
        FIELD.replace(b'name="audience"', b'name="aud"ience') + CLOSE,
        FIELD.replace(b'name="audience"', b'name="a\\"b"') + CLOSE,
        FIELD.replace(b"form-data", b"attachment") + CLOSE,
        FIELD.replace(b'; name="audience"', b"") + CLOSE,  # no name
        b"--xyz\r\n\r\n/ws/x\r\n" + CLOSE,  # no headers at all
        FIELD.replace(b"Content-Disposition", b"Content-Disposition: x\r\nContent-Disposition")
        + CLOSE,
        FIELD + b"--xyzabc\r\n" + CLOSE,  # a longer boundary is not this one
        FIELD + b"--xyz-- junk\r\n",  # junk after the closing delimiter
        FIELD.replace(b"--xyz\r\n", b"--xyz junk\r\n") + CLOSE,  # junk after a delimiter
        b"no delimiter at all",
        FIELD.replace(b"Content-Disposition", "Cönt".encode()) + CLOSE,
        FIELD.replace(b"\r\n\r\n", b"\r\nBroken header\r\n\r\n") + CLOSE,
        FIELD.replace(b"\r\n\r\n", b"\r\nX: \xff\r\n\r\n") + CLOSE,  # not UTF-8
        # The boundary elsewhere than in a delimiter: Sanic's parser splits
        # there, so request.form would read other fields than the endpoint.
        FIELD.replace(b"/ws/x", b"/ws/x--xyz") + CLOSE,
        FIELD + CLOSE + b"epilogue\r\n--xyz\r\n",
        b"preamble xyz\r\n" + WELL_FORMED,
        # Encoded content would be read as the encoded text.
        FIELD.replace(b"\r\n\r\n", b"\r\nContent-Transfer-Encoding: base64\r\n\r\n") + CLOSE,
        FIELD.replace(b"\r\n\r\n", b"\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n")
        + CLOSE,
    ],
    ids=[
        "unclosed",
        "close-without-delimiter",
        "bare-lf",
        "no-blank-line",
        "folded",
        "upper-case-unclosed",
        "name-star",
        "name-twice",
        "junk-after-quote",
        "backslash-escape",
        "not-form-data",
        "no-name",
        "no-headers",
        "two-dispositions",
        "longer-boundary",
        "junk-after-close",
        "junk-after-delimiter",
        "no-delimiter",
        "non-token-header",
        "no-colon",
        "header-not-utf8",
        "boundary-in-a-value",
        "boundary-in-the-epilogue",
        "boundary-in-the-preamble",
        "base64-part",
        "quoted-printable-part",
    ],
)
def test_malformed_multipart_is_refused(body: bytes) -> None:
    with pytest.raises(ValueError):
        body_values("multipart/form-data", {"boundary": "xyz"}, body, "audience")


@pytest.mark.parametrize(
    ("content_type", "content"),
    [
        ("text/plain; charset=no-such-charset", b"/ws/x"),
        ("text/plain; charset=utf-8", b"/ws/\xff"),
        ("text/plain; charset", b"/ws/x"),
    ],
    ids=["unknown-charset", "undecodable", "malformed-type"],
)
def test_an_audience_part_that_cannot_be_decoded_is_refused(
    content_type: str, content: bytes
) -> None:
    body = FIELD.replace(
        b"\r\n\r\n/ws/x", f"\r\nContent-Type: {content_type}\r\n\r\n".encode() + content
    )
    with pytest.raises(ValueError):
        body_values("multipart/form-data", {"boundary": "xyz"}, body + CLOSE, "audience")


def test_a_file_named_as_the_field_is_refused_and_other_files_are_not_decoded() -> None:
    upload = (
        b'--xyz\r\nContent-Disposition: form-data; name="f"; filename="a.bin"\r\n\r\n\xff\xfe\r\n'
    )
    assert body_values(
        "multipart/form-data", {"boundary": "xyz"}, upload + WELL_FORMED, "audience"
    ) == ["/ws/x"]
    as_file = upload.replace(b'name="f"', b'name="audience"')
    with pytest.raises(ValueError, match="file"):
        body_values("multipart/form-data", {"boundary": "xyz"}, as_file + CLOSE, "audience")


@pytest.mark.parametrize("encoding", ["7bit", "8bit", "Binary"])
def test_identity_transfer_encodings_are_read(encoding: str) -> None:
    header = f"\r\nContent-Transfer-Encoding: {encoding}\r\n\r\n".encode()
    body = FIELD.replace(b"\r\n\r\n", header) + CLOSE
    assert body_values("multipart/form-data", {"boundary": "xyz"}, body, "audience") == ["/ws/x"]


@pytest.mark.parametrize(
    "body",
    [
        b'{"audience": "/ws/a", "audience": "/ws/b"}',
        b'{"audience": "/ws/a", "\\u0061udience": "/ws/b"}',
    ],
    ids=["twice", "escaped-twice"],
)
def test_a_json_field_given_twice_is_refused(body: bytes) -> None:
    # json.loads would keep the last one; a proxy or WAF may keep the first.
    with pytest.raises(ValueError):
        body_values("application/json", {}, body, "audience")


def test_other_json_keys_given_twice_are_the_apps_business() -> None:
    body = b'{"audience": "/ws/a", "x": 1, "x": 2, "nested": {"audience": 1, "audience": 2}}'
    assert body_values("application/json", {}, body, "audience") == ["/ws/a"]


@pytest.mark.parametrize("body", [b"audience=%2Fws%2F%FF", b"audience=/ws/a&other=%FE"])
def test_percent_escapes_that_are_not_utf8_are_refused(body: bytes) -> None:
    # Read with errors="replace" they would become U+FFFD: two different
    # requests, one audience.
    with pytest.raises(ValueError):
        body_values("application/x-www-form-urlencoded", {}, body, "audience")
