"""Read one field from a request body (JSON, urlencoded or multipart), strictly.

The ticket endpoint reads the requested audience here. Anything that may
carry the field and cannot be read exactly is a ValueError (the endpoint
answers 400): an unbound ticket in its place would grant more than was asked.
So the multipart reader below checks the whole body's structure (RFC 2046
section 5.1.1, RFC 7578) rather than pick out what it can, as Sanic's
``request.form`` does: Sanic drops a part without its closing delimiter or
with bare LF line ends, and logs a traceback for some bodies it cannot read.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import parse_qs

__all__ = ["body_values", "multipart_fields"]

_CRLF = b"\r\n"
_PADDING = b" \t"
#: An HTTP token (RFC 9110): a media type's parts, a parameter's name.
_TCHARS = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_TYPE = re.compile(rf"[ \t]*({_TCHARS}(?:/{_TCHARS})?)")
#: One ``; name=value`` parameter, the value a token or a quoted string.
#: Browsers percent-encode a quote in a quoted value (%22) and send a
#: backslash as it is, so a backslash escapes nothing here.
_PARAM = re.compile(rf'[ \t]*;[ \t]*({_TCHARS})=(?:({_TCHARS})|"([^"]*)")')
_HEADER_NAME = re.compile(_TCHARS)
_IDENTITY = frozenset({"7bit", "8bit", "binary"})
#: A part: its field name, whether it is a file, its Content-Type (None if
#: absent) and its content.
_Field = tuple[str, bool, str | None, bytes]


def body_values(media_type: str, options: dict[str, Any], body: bytes, name: str) -> list[Any]:
    """Every value of the field ``name`` in ``body``, read by its media type.

    Args:
        media_type: The request's media type, lower case (``application/json``).
        options: Its parameters (``boundary``), as Sanic's ``parse_content_header`` gives them.
        body: The raw body.
        name: The field.

    Raises:
        ValueError: the body may hold the field and cannot be read exactly:
            malformed, of another type, a JSON body that is not an object,
            the field sent as a file or in a charset that cannot be decoded.
    """
    if media_type == "application/json" or media_type.endswith("+json"):
        twice: list[bool] = []

        def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
            twice.append(sum(key == name for key, _ in items) > 1)
            return dict(items)

        try:
            document = json.loads(body, object_pairs_hook=pairs)
        except (ValueError, RecursionError):  # deep nesting: RecursionError
            raise ValueError("invalid JSON body") from None
        if document.__class__ is not dict:
            raise ValueError("JSON body is not an object")
        # The outermost object is made last. json.loads keeps the last of two
        # equal keys: the field twice is refused, as it is twice in a form or
        # in the query and the body (a proxy may have read the first).
        if twice[-1]:
            raise ValueError("the field twice")
        return [document[name]] if name in document else []
    if media_type == "application/x-www-form-urlencoded":
        # UnicodeDecodeError is a ValueError too; so is a percent-escape that
        # is not UTF-8 (errors="strict"), which would otherwise read as U+FFFD.
        text = body.decode("utf-8")
        return parse_qs(text, keep_blank_values=True, errors="strict").get(name, [])
    if media_type == "multipart/form-data":
        boundary = options.get("boundary")
        if not isinstance(boundary, str) or not boundary:
            raise ValueError("multipart body without a boundary")
        values: list[Any] = []
        for field, is_file, content_type, content in multipart_fields(
            body, boundary.encode("utf-8")
        ):
            if field == name:
                if is_file:
                    raise ValueError("field sent as a file")
                charset = "utf-8"
                if content_type is not None:
                    charset = _parameters(content_type)[1].get("charset", charset)
                try:
                    values.append(content.decode(charset))
                except LookupError:  # an unknown charset
                    raise ValueError("unknown charset") from None
        return values
    raise ValueError("unreadable body")


def multipart_fields(body: bytes, boundary: bytes) -> list[_Field]:
    """The parts of a ``multipart/form-data`` body: ``(name, is_file, content_type, content)``.

    The body must be well formed from the first delimiter to the closing one:
    CRLF line ends, every part with its header block and a blank line, one
    ``Content-Disposition: form-data`` with one ``name`` (not ``name*``) per
    part, no ``Content-Transfer-Encoding`` but the identity ones, and the
    closing delimiter. A preamble before the first delimiter and an epilogue
    after the closing one are allowed (RFC 2046) and ignored; the boundary
    may appear nowhere but in the delimiters (Sanic's own parser splits the
    body at every occurrence, so it would read other fields than these).

    Raises:
        ValueError: anything else.
    """
    dash = b"--" + boundary
    delimiter = _CRLF + dash
    if body.startswith(dash):
        position = len(dash)
    else:
        found = body.find(delimiter)
        if found < 0:
            raise ValueError("no multipart delimiter")
        position = found + len(delimiter)
    fields: list[_Field] = []
    while True:
        line_end = body.find(_CRLF, position)
        rest = body[position:] if line_end < 0 else body[position:line_end]
        if rest.startswith(b"--"):
            # The closing delimiter: then padding, and the end or CRLF and an epilogue.
            if rest[2:].strip(_PADDING):
                raise ValueError("junk after the closing delimiter")
            if body.count(boundary) != len(fields) + 1:
                raise ValueError("the boundary elsewhere than in a delimiter")
            return fields
        if line_end < 0 or rest.strip(_PADDING):
            raise ValueError("junk after a delimiter")
        start = line_end + 2
        end = body.find(delimiter, start)
        if end < 0:
            raise ValueError("no closing delimiter")
        fields.append(_part(body[start:end]))
        position = end + len(delimiter)


def _part(part: bytes) -> _Field:
    head, blank, content = part.partition(_CRLF + _CRLF)
    if not blank:
        raise ValueError("a part without a blank line after its headers")
    disposition: str | None = None
    content_type: str | None = None
    for raw in head.split(_CRLF):
        if b"\r" in raw or b"\n" in raw:
            raise ValueError("bare CR or LF in a part's headers")
        line = raw.decode("utf-8")  # UnicodeDecodeError is a ValueError
        header, colon, value = line.partition(":")
        if not colon or _HEADER_NAME.fullmatch(header) is None:
            raise ValueError("malformed part header")  # folded lines included
        header = header.lower()
        if header == "content-disposition":
            if disposition is not None:
                raise ValueError("two Content-Disposition headers")
            disposition = value
        elif header == "content-type":
            if content_type is not None:
                raise ValueError("two Content-Type headers")
            content_type = value
        elif header == "content-transfer-encoding":
            # RFC 7578 deprecates it; base64 or quoted-printable would be
            # read as the encoded text.
            if value.strip(" \t").lower() not in _IDENTITY:
                raise ValueError("a part with a Content-Transfer-Encoding")
    if disposition is None:
        raise ValueError("a part without Content-Disposition")
    kind, params = _parameters(disposition)
    name = params.get("name")
    if kind != "form-data" or name is None or "name*" in params:
        raise ValueError("a part that is not a named form-data field")
    return name, "filename" in params or "filename*" in params, content_type, content


def _parameters(value: str) -> tuple[str, dict[str, str]]:
    """``type; name=value; ...`` read whole: the type (lower case) and the parameters.

    Parameter names are lower-cased; values are unescaped as browsers escape
    them in form data (``%22`` for a quote, ``%0D%0A`` for a line end). A
    value that is not exactly that grammar, or a parameter given twice, raises.
    """
    match = _TYPE.match(value)
    if match is None:
        raise ValueError("malformed header value")
    kind = match.group(1).lower()
    params: dict[str, str] = {}
    position = match.end()
    rest = value.rstrip(" \t")
    while position < len(rest):
        match = _PARAM.match(rest, position)
        if match is None:
            raise ValueError("malformed header parameters")
        key = match.group(1).lower()
        if key in params:
            raise ValueError("a parameter given twice")
        raw = match.group(2) if match.group(2) is not None else match.group(3)
        params[key] = raw.replace("%22", '"').replace("%0D%0A", "\n")
        position = match.end()
    return kind, params
