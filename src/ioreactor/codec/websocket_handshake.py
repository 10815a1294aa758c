"""The WebSocket opening handshake (RFC 6455 §4): the HTTP/1.1 Upgrade, on both sides.

Server::

    request head -> parse_request_head -> validate_upgrade_request -> UpgradeRequest
      -> accept(request, subprotocols=..., deflate=...) -> 101 response bytes + Handshake
      (a bad request raises HandshakeError -> error_response(exc): 400 / 405 / 426)

Client::

    new_key() -> client_request(host, target, key, ...) -> request bytes
    response head -> parse_response_head -> check_response(head, key, ...) -> Handshake

The helpers work on header fields as they arrive, ``(name, value)`` byte pairs in order
(what httptools, the HTTP layer's ``Headers.raw`` and ASGI all use), so an HTTP server
can validate an Upgrade it has parsed itself; :func:`parse_request_head` is the strict
little parser for servers that read the handshake straight from a TCP stream.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from ioreactor.codec.websocket_deflate import (
    DeflateConfig,
    DeflateParameters,
    Extension,
    NegotiationError,
    parse_extensions,
)

#: The GUID RFC 6455 appends to the key before hashing it into Sec-WebSocket-Accept.
GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#: The only protocol version (``Sec-WebSocket-Version``).
VERSION = "13"
#: Default limit on a handshake's head (request or status line and header fields).
MAX_HANDSHAKE_SIZE = 16 * 1024
#: Default limit on the number of header fields of a handshake.
MAX_HEADERS = 100

#: Header fields as they arrive: ``(name, value)`` byte pairs, in order.
RawHeaders = Sequence[tuple[bytes, bytes]]

_REASONS = {
    101: "Switching Protocols",
    400: "Bad Request",
    405: "Method Not Allowed",
    426: "Upgrade Required",
    431: "Request Header Fields Too Large",
}


class HandshakeError(ValueError):
    """A handshake that cannot succeed. On a server ``status`` and ``headers`` are the
    HTTP error to answer with (see :func:`error_response`)."""

    def __init__(
        self, message: str, status: int = 400, headers: Sequence[tuple[str, str]] = ()
    ) -> None:
        super().__init__(message)
        self.status = status
        self.headers = tuple(headers)


@dataclass(frozen=True, slots=True)
class RequestHead:
    method: str
    target: str
    #: ``(major, minor)``
    version: tuple[int, int]
    headers: list[tuple[bytes, bytes]]


@dataclass(frozen=True, slots=True)
class ResponseHead:
    version: tuple[int, int]
    status: int
    reason: str
    headers: list[tuple[bytes, bytes]]


@dataclass(frozen=True, slots=True)
class UpgradeRequest:
    """A valid Upgrade request: what the server negotiates from."""

    key: str
    target: str
    #: Subprotocols the client offers, in its order of preference.
    subprotocols: tuple[str, ...]
    #: Extensions the client offers (parsed ``Sec-WebSocket-Extensions``).
    extensions: list[Extension]
    headers: list[tuple[bytes, bytes]] = field(repr=False)


@dataclass(frozen=True, slots=True)
class Handshake:
    """What both ends agreed: the subprotocol and the permessage-deflate parameters."""

    subprotocol: str | None = None
    deflate: DeflateParameters | None = None


# -- header fields -----------------------------------------------------------------------

_TOKEN = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_FIELD = re.compile(
    rb"(" + _TOKEN + rb"):[ \t]*((?:[\x21-\x7e\x80-\xff](?:[ \t]*[\x21-\x7e\x80-\xff])*)?)[ \t]*\Z"
)
_REQUEST_LINE = re.compile(rb"(" + _TOKEN + rb") ([\x21-\x7e]+) HTTP/(\d)\.(\d)\Z")
_STATUS_LINE = re.compile(rb"HTTP/(\d)\.(\d) (\d{3}) ([\t\x20-\x7e\x80-\xff]*)\Z")
_TOKEN_STR = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")


def _fields(lines: list[bytes], max_headers: int) -> list[tuple[bytes, bytes]]:
    if len(lines) > max_headers:
        raise HandshakeError(f"more than {max_headers} header fields", 431)
    headers: list[tuple[bytes, bytes]] = []
    for line in lines:
        match = _FIELD.match(line)
        if match is None:
            raise HandshakeError(f"malformed header field {line[:80]!r}")
        headers.append((match.group(1), match.group(2)))
    return headers


def parse_request_head(head: bytes, *, max_headers: int = MAX_HEADERS) -> RequestHead:
    """The request line and header fields of ``head`` (the bytes before the empty line).

    Strict: CRLF line ends only, no obs-fold, token field names, no control characters
    in values; anything else raises :class:`HandshakeError` (400, or 431 for too many
    fields).
    """
    request_line, *lines = head.split(b"\r\n")
    match = _REQUEST_LINE.match(request_line)
    if match is None:
        raise HandshakeError(f"malformed request line {request_line[:80]!r}")
    method, target, major, minor = match.groups()
    return RequestHead(
        method.decode("ascii"),
        target.decode("ascii"),
        (int(major), int(minor)),
        _fields(lines, max_headers),
    )


def parse_response_head(head: bytes, *, max_headers: int = MAX_HEADERS) -> ResponseHead:
    """The status line and header fields of ``head`` (the bytes before the empty line)."""
    status_line, *lines = head.split(b"\r\n")
    match = _STATUS_LINE.match(status_line)
    if match is None:
        raise HandshakeError(f"malformed status line {status_line[:80]!r}")
    major, minor, status, reason = match.groups()
    return ResponseHead(
        (int(major), int(minor)),
        int(status),
        reason.decode("latin-1"),
        _fields(lines, max_headers),
    )


def header_values(headers: Iterable[tuple[bytes, bytes]], name: str) -> list[str]:
    """Every value of the field ``name`` (any case), in order."""
    wanted = name.lower().encode("ascii")
    return [value.decode("latin-1") for key, value in headers if key.lower() == wanted]


def _tokens(values: list[str]) -> list[str]:
    """The comma-separated elements of a list-valued field's values (empty ones skipped)."""
    return [item for value in values for part in value.split(",") if (item := part.strip(" \t"))]


def _single(headers: RawHeaders, name: str, status: int = 400) -> str:
    values = header_values(headers, name)
    if len(values) != 1:
        raise HandshakeError(f"expected one {name} field, got {len(values)}", status)
    return values[0]


def _check_field(name: str, value: str) -> None:
    if not _TOKEN_STR.match(name) or re.search(r"[\r\n\0]", value):
        raise ValueError(f"header {name!r}: invalid name or CR, LF or NUL in the value")


def _head(first_line: str, fields: Iterable[tuple[str, str]]) -> bytes:
    lines = [first_line]
    for name, value in fields:
        _check_field(name, value)
        lines.append(f"{name}: {value}")
    lines.extend(("", ""))
    return "\r\n".join(lines).encode("latin-1")


# -- keys --------------------------------------------------------------------------------


def accept_key(key: str) -> str:
    """``Sec-WebSocket-Accept`` for ``Sec-WebSocket-Key`` ``key`` (RFC 6455 §4.2.2)."""
    digest = hashlib.sha1((key + GUID).encode("ascii")).digest()
    return base64.b64encode(digest).decode("ascii")


def new_key() -> str:
    """A client's ``Sec-WebSocket-Key``: 16 random bytes, base64."""
    return base64.b64encode(os.urandom(16)).decode("ascii")


# -- server side -------------------------------------------------------------------------

_UPGRADE_REQUIRED = (("Upgrade", "websocket"), ("Sec-WebSocket-Version", VERSION))


def validate_upgrade_request(
    method: str, version: tuple[int, int], headers: RawHeaders, target: str = "/"
) -> UpgradeRequest:
    """Check an opening handshake request (RFC 6455 §4.2.1); raise :class:`HandshakeError`
    with the status to answer: 405 not GET, 426 not an Upgrade to WebSocket version 13,
    400 anything else (HTTP before 1.1, Host, Sec-WebSocket-Key, extensions)."""
    if method != "GET":
        raise HandshakeError(f"method {method} is not GET", 405, (("Allow", "GET"),))
    if version < (1, 1):
        raise HandshakeError(f"HTTP/{version[0]}.{version[1]} cannot upgrade (1.1 needed)")
    _single(headers, "Host")
    upgrade = [token.lower() for token in _tokens(header_values(headers, "Upgrade"))]
    if "websocket" not in upgrade:
        raise HandshakeError("no Upgrade: websocket", 426, _UPGRADE_REQUIRED)
    connection = [token.lower() for token in _tokens(header_values(headers, "Connection"))]
    if "upgrade" not in connection:
        raise HandshakeError("no upgrade token in Connection", 426, _UPGRADE_REQUIRED)
    versions = header_values(headers, "Sec-WebSocket-Version")
    if versions != [VERSION]:
        raise HandshakeError(
            f"Sec-WebSocket-Version {', '.join(versions) or 'missing'} (13 needed)",
            426,
            _UPGRADE_REQUIRED,
        )
    key = _single(headers, "Sec-WebSocket-Key").strip(" \t")
    try:
        raw_key = base64.b64decode(key.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raw_key = b""
    if len(raw_key) != 16:
        raise HandshakeError(f"Sec-WebSocket-Key {key!r} is not 16 bytes in base64")
    subprotocols = _tokens(header_values(headers, "Sec-WebSocket-Protocol"))
    for name in subprotocols:
        if not _TOKEN_STR.match(name):
            raise HandshakeError(f"subprotocol {name!r} is not a token")
    try:
        extensions = parse_extensions(header_values(headers, "Sec-WebSocket-Extensions"))
    except NegotiationError as exc:
        raise HandshakeError(str(exc)) from None
    return UpgradeRequest(key, target, tuple(subprotocols), extensions, list(headers))


def select_subprotocol(offered: Sequence[str], supported: Sequence[str]) -> str | None:
    """The first of ``supported`` (the server's order of preference) that the client
    offered, or None (then the response names none)."""
    for name in supported:
        if name in offered:
            return name
    return None


def accept(
    request: UpgradeRequest,
    *,
    subprotocols: Sequence[str] = (),
    deflate: DeflateConfig | None = None,
    extra_headers: Iterable[tuple[str, str]] = (),
) -> tuple[bytes, Handshake]:
    """Negotiate the subprotocol and permessage-deflate; the 101 response head and what
    was agreed."""
    subprotocol = select_subprotocol(request.subprotocols, subprotocols)
    params = deflate.accept_offers(request.extensions) if deflate is not None else None
    fields = [
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Accept", accept_key(request.key)),
    ]
    if subprotocol is not None:
        fields.append(("Sec-WebSocket-Protocol", subprotocol))
    if params is not None:
        fields.append(("Sec-WebSocket-Extensions", params.header_value()))
    fields.extend(extra_headers)
    return _head("HTTP/1.1 101 Switching Protocols", fields), Handshake(subprotocol, params)


def error_response(error: HandshakeError) -> bytes:
    """The HTTP response refusing a handshake: ``error.status``, its headers, the reason
    as a plain-text body, and ``Connection: close``."""
    body = f"{error}\n".encode()
    fields = [
        ("Content-Type", "text/plain; charset=utf-8"),
        ("Content-Length", str(len(body))),
        ("Connection", "close"),
        *error.headers,
    ]
    reason = _REASONS.get(error.status, "Error")
    return _head(f"HTTP/1.1 {error.status} {reason}", fields) + body


# -- client side -------------------------------------------------------------------------


def client_request(
    host: str,
    target: str = "/",
    *,
    key: str,
    subprotocols: Sequence[str] = (),
    deflate: DeflateConfig | None = None,
    origin: str | None = None,
    extra_headers: Iterable[tuple[str, str]] = (),
) -> bytes:
    """A client's opening handshake request for ``target`` on ``host`` (``host[:port]``)."""
    fields = [
        ("Host", host),
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Key", key),
        ("Sec-WebSocket-Version", VERSION),
    ]
    if origin is not None:
        fields.append(("Origin", origin))
    if subprotocols:
        fields.append(("Sec-WebSocket-Protocol", ", ".join(subprotocols)))
    if deflate is not None:
        fields.append(("Sec-WebSocket-Extensions", deflate.offer()))
    fields.extend(extra_headers)
    return _head(f"GET {target} HTTP/1.1", fields)


def check_response(
    response: ResponseHead,
    *,
    key: str,
    subprotocols: Sequence[str] = (),
    deflate: DeflateConfig | None = None,
) -> Handshake:
    """Check the server's answer to :func:`client_request` (RFC 6455 §4.1): 101, the
    Upgrade and Connection fields, the accept key, a subprotocol and extensions that
    were offered. Raises :class:`HandshakeError` otherwise."""
    headers = response.headers
    if response.status != 101:
        raise HandshakeError(f"the server answered {response.status} {response.reason}")
    if "websocket" not in [t.lower() for t in _tokens(header_values(headers, "Upgrade"))]:
        raise HandshakeError("the response has no Upgrade: websocket")
    if "upgrade" not in [t.lower() for t in _tokens(header_values(headers, "Connection"))]:
        raise HandshakeError("the response has no upgrade token in Connection")
    if _single(headers, "Sec-WebSocket-Accept").strip(" \t") != accept_key(key):
        raise HandshakeError("Sec-WebSocket-Accept does not match the key")
    chosen = _tokens(header_values(headers, "Sec-WebSocket-Protocol"))
    if len(chosen) > 1 or (chosen and chosen[0] not in subprotocols):
        raise HandshakeError(f"the server chose subprotocols that were not offered: {chosen}")
    try:
        extensions = parse_extensions(header_values(headers, "Sec-WebSocket-Extensions"))
        if extensions and deflate is None:
            raise NegotiationError("the server accepted extensions that were not offered")
        params = deflate.check_response(extensions) if deflate is not None else None
    except NegotiationError as exc:
        raise HandshakeError(str(exc)) from None
    return Handshake(chosen[0] if chosen else None, params)
