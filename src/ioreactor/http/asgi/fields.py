"""The header fields an ASGI application sends, checked and encoded once per distinct field.

Data flow::

    http.response.start "headers" [(name, value), ...]
        --encode_fields--> ResponseFields: the lines as sent, and what the server must
                           know of them (Content-Length, chunked, Connection: close,
                           whether Server and Date were given)

Every field is checked before it reaches the wire: a name must be an RFC 9110 token and
a value must not contain CR, LF, NUL or other control characters but tab (a value with a
line break would let whoever controls it inject fields or a whole response). Each
distinct ``(name, value)`` pair is checked and encoded once: the encoded line is kept in
a table (``FIELD_CACHE_ENTRIES``), so an application that sends ``content-type:
text/plain`` on every response costs one dict lookup per field, not two regular
expressions (uvicorn's cost).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Final

#: RFC 9110 ``token``: what a field name may be.
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
#: Bytes a field value must not contain (control characters but horizontal tab).
_FORBIDDEN_VALUE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")

#: Encoded lines kept; the table starts over when full (an application that sends
#: ever new values only costs the checks it would cost anyway).
FIELD_CACHE_ENTRIES = 1024

# What a field means to the server (the second item of a cached entry).
PLAIN: Final = 0
CONTENT_LENGTH: Final = 1
CHUNKED: Final = 2
CLOSE: Final = 3
SERVER: Final = 4
DATE: Final = 5

_KINDS = {b"server": SERVER, b"date": DATE}


class ResponseFields:
    """The checked fields of one response head (see the module docstring)."""

    __slots__ = ("chunked", "close", "has_date", "has_server", "length", "lines")

    def __init__(self) -> None:
        #: The fields' lines as they go on the wire, each ending with CRLF.
        self.lines = b""
        #: The Content-Length the application gave (-1: none).
        self.length = -1
        #: The application asked for ``Transfer-Encoding: chunked`` itself.
        self.chunked = False
        #: The application asked to close the connection (``Connection: close``).
        self.close = False
        self.has_server = False
        self.has_date = False


_cache: dict[tuple[bytes, bytes], tuple[bytes, int, int]] = {}


def _encode(name: bytes, value: bytes) -> tuple[bytes, int, int]:
    """``(line, kind, number)`` for one field, checked; raises RuntimeError if invalid."""
    if type(name) is not bytes or type(value) is not bytes:
        raise RuntimeError(f"ASGI header fields are bytes, got {name!r}: {value!r}")
    if not _TOKEN.match(name):
        raise RuntimeError(f"invalid header name {name!r}")
    if _FORBIDDEN_VALUE.search(value):
        raise RuntimeError(f"header {name!r}: control characters in value {value!r}")
    value = value.strip(b" \t")
    lower = name.lower()
    kind = _KINDS.get(lower, PLAIN)
    number = 0
    if lower == b"content-length":
        if not value.isdigit():
            raise RuntimeError(f"invalid Content-Length {value!r}")
        kind = CONTENT_LENGTH
        number = int(value)
    elif lower == b"transfer-encoding":
        if value.lower() != b"chunked":
            raise RuntimeError(f"unsupported Transfer-Encoding {value!r}")
        # Not sent as given: the server writes the chunked framing and its field.
        return b"", CHUNKED, 0
    elif lower == b"connection" and value.lower() == b"close":
        kind = CLOSE
    return name + b": " + value + b"\r\n", kind, number


def encode_fields(headers: Iterable[Iterable[bytes]]) -> ResponseFields:
    """Check and encode an application's response fields (RuntimeError if invalid)."""
    fields = ResponseFields()
    lines = []
    cache = _cache
    for pair in headers:
        name, value = pair
        key = (name, value)
        entry = cache.get(key)
        if entry is None:
            entry = _encode(name, value)
            if len(cache) >= FIELD_CACHE_ENTRIES:
                cache.clear()
            cache[key] = entry
        line, kind, number = entry
        if kind:
            if kind == CONTENT_LENGTH:
                if fields.length >= 0 and fields.length != number:
                    raise RuntimeError("conflicting Content-Length fields")
                fields.length = number
            elif kind == CHUNKED:
                fields.chunked = True
                continue
            elif kind == CLOSE:
                fields.close = True
            elif kind == SERVER:
                fields.has_server = True
            else:
                fields.has_date = True
        lines.append(line)
    if fields.chunked and fields.length >= 0:
        raise RuntimeError("both Content-Length and Transfer-Encoding: chunked")
    fields.lines = b"".join(lines)
    return fields


def encode_trailers(headers: Iterable[Iterable[bytes]]) -> bytes:
    """Trailer field lines (the same checks; framing fields are not allowed there)."""
    lines = []
    for pair in headers:
        name, value = pair
        line, kind, _ = _encode(name, value)
        if kind in (CONTENT_LENGTH, CHUNKED):
            raise RuntimeError(f"{name!r} is not allowed in trailers")
        lines.append(line)
    return b"".join(lines)
