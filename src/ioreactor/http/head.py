"""The head of an HTTP/1.1 response, as bytes: one encoder for every kind of response.

Data flow::

    status line, Server, Date, checked field lines (a handler's, an ASGI or a WSGI
    application's), framing_field(status, length, chunked), connection_field(request)
        --encode_head--> b"HTTP/1.1 200 OK\\r\\nServer: ..\\r\\nDate: ..\\r\\n<fields>"
                         b"Content-Length: 5\\r\\nConnection: close\\r\\n\\r\\n"

The native responses (:mod:`ioreactor.http.response`), the ASGI cycle and the WSGI
writer all build their heads here, so the order of the lines and the framing rules are
written once:

- **Framing.** 1xx, 204 and 304 responses carry no body and no framing field from the
  server (RFC 9110 6.4.1); a body of known length gets ``Content-Length``; a body of
  unknown length is chunked on HTTP/1.1 and ended by the close on HTTP/1.0. A HEAD
  response keeps the framing its GET would have had, without the body.
- **Connection.** Nothing for a keep-alive HTTP/1.1 exchange (the default),
  ``Connection: keep-alive`` for a keep-alive HTTP/1.0 one, ``Connection: close``
  otherwise.

The field lines reach the encoder already checked (a name that is a token, a value
without CR, LF or NUL: :func:`ioreactor.http.headers.encode_field` and
:mod:`ioreactor.http.asgi.fields`): the encoder joins lines, it never sees a raw value.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ioreactor.http.status import REASON_PHRASES

if TYPE_CHECKING:
    from ioreactor.http.request import Request

CLOSE_FIELD = b"Connection: close\r\n"
KEEP_ALIVE_FIELD = b"Connection: keep-alive\r\n"
CHUNKED_FIELD = b"Transfer-Encoding: chunked\r\n"


def _build_status_lines() -> dict[int, bytes]:
    return {s: b"HTTP/1.1 %d %s\r\n" % (s, p.encode("ascii")) for s, p in REASON_PHRASES.items()}


#: ``b"HTTP/1.1 200 OK\r\n"`` and friends, built once.
STATUS_LINES = _build_status_lines()


def status_line(status: int) -> bytes:
    """The status line of ``status`` (ValueError outside 100-999; an unknown status has
    an empty reason phrase)."""
    line = STATUS_LINES.get(status)
    if line is None:
        if not 100 <= status <= 999:
            raise ValueError(f"invalid status code {status}")
        line = STATUS_LINES[status] = b"HTTP/1.1 %d \r\n" % status
    return line


def has_body(status: int) -> bool:
    """1xx, 204 and 304 responses never carry a body (RFC 9110 6.4.1)."""
    return status >= 200 and status != 204 and status != 304


def framing_field(status: int, length: int, chunked: bool) -> bytes:
    """The framing line the server writes: none for a status without a body, else
    ``Transfer-Encoding: chunked`` when ``chunked``, else ``Content-Length: length``
    when ``length`` is known (not negative), else none (the close ends the body, or the
    application's own Content-Length is among its fields)."""
    if not has_body(status):
        return b""
    if chunked:
        return CHUNKED_FIELD
    if length >= 0:
        return b"Content-Length: %d\r\n" % length
    return b""


def connection_field(request: Request) -> bytes:
    """The ``Connection`` field line the response to ``request`` carries (none for a
    keep-alive HTTP/1.1 exchange, the default)."""
    if request.keep_alive:
        return b"" if request.version == "1.1" else KEEP_ALIVE_FIELD
    return CLOSE_FIELD


def encode_head(
    line: bytes, server: bytes, date: bytes, fields: bytes, framing: bytes, connection: bytes
) -> bytes:
    """The head, ending with its blank line: each argument is a whole line (or several,
    or none), in the order they go on the wire."""
    return b"%s%s%s%s%s%s\r\n" % (line, server, date, fields, framing, connection)
