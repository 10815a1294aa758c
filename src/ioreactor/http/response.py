"""What a handler returns: a whole response, a streamed (chunked) one, or a file.

A handler may also return ``str`` (sent as ``text/plain; charset=utf-8``) or ``bytes``
(``application/octet-stream``). The server adds ``Server``, ``Date``, the framing
(``Content-Length`` or ``Transfer-Encoding: chunked``) and ``Connection``; a handler sets
everything else, and every field it sets is checked (see :mod:`ioreactor.http.headers`).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING

from ioreactor.http.date import DATE
from ioreactor.http.headers import HeaderError, encode_field
from ioreactor.http.status import REASON_PHRASES

if TYPE_CHECKING:
    from ioreactor.loop.event_loop import EventLoop

HeaderInput = Mapping[str, str] | Iterable[tuple[str, str]] | None

TEXT_PLAIN = "text/plain; charset=utf-8"
OCTET_STREAM = "application/octet-stream"
TEXT_FIELD = b"Content-Type: text/plain; charset=utf-8\r\n"
OCTET_FIELD = b"Content-Type: application/octet-stream\r\n"
CLOSE_FIELD = b"Connection: close\r\n"
KEEP_ALIVE_FIELD = b"Connection: keep-alive\r\n"
CHUNKED_FIELD = b"Transfer-Encoding: chunked\r\n"
CHUNK_END = b"0\r\n\r\n"
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
#: Fields only the server writes: a handler setting them could break the message framing.
_SERVER_FIELDS = frozenset({"content-length", "transfer-encoding", "date", "server"})


def _build_status_lines() -> dict[int, bytes]:
    return {s: b"HTTP/1.1 %d %s\r\n" % (s, p.encode("ascii")) for s, p in REASON_PHRASES.items()}


#: ``b"HTTP/1.1 200 OK\r\n"`` and friends, built once.
STATUS_LINES = _build_status_lines()


def status_line(status: int) -> bytes:
    line = STATUS_LINES.get(status)
    if line is None:
        if not 100 <= status <= 999:
            raise ValueError(f"invalid status code {status}")
        line = STATUS_LINES[status] = b"HTTP/1.1 %d \r\n" % status
    return line


def has_body(status: int) -> bool:
    """1xx, 204 and 304 responses never carry a body (RFC 9110 6.4.1)."""
    return status >= 200 and status != 204 and status != 304


def _refuse_bodiless(status: int, kind: str) -> None:
    """A body-framed response type with a status that has no body would frame one on the
    wire anyway (chunks or Content-Length) and desynchronise the client's parser."""
    if not has_body(status):
        raise ValueError(f"a {status} response has no body: return Response(status={status})")


def encode_fields(headers: HeaderInput) -> tuple[bytes, bool]:
    """Encode handler-set fields; returns ``(field lines, connection close requested)``."""
    if not headers:
        return b"", False
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    lines = []
    close = False
    for name, value in pairs:
        lower = name.lower()
        if lower in _SERVER_FIELDS:
            raise HeaderError(f"{name} is set by the server")
        if lower == "connection":
            if str(value).strip().lower() != "close":
                raise HeaderError("a handler may only set 'Connection: close'")
            close = True
            continue
        lines.append(encode_field(name, value))
    return b"".join(lines), close


def encode_head(
    status: int, fields: bytes, framing: bytes, connection: bytes, server: bytes
) -> bytes:
    """Status line and header block, ending with the blank line."""
    return b"%s%s%s%s%s%s\r\n" % (
        status_line(status),
        server,
        DATE.line,
        fields,
        framing,
        connection,
    )


class Response:
    """A complete response: status, header fields and the whole body."""

    __slots__ = ("body", "close", "fields", "status")

    def __init__(
        self,
        body: bytes | bytearray | str = b"",
        status: int = 200,
        headers: HeaderInput = None,
        content_type: str | None = None,
    ) -> None:
        status_line(status)  # validates
        self.status = status
        if isinstance(body, str):
            body = body.encode("utf-8", "surrogateescape")
            content_type = content_type or TEXT_PLAIN
        self.body = bytes(body)
        self.fields, self.close = encode_fields(headers)
        if content_type is None and self.body:
            content_type = OCTET_STREAM
        if content_type is not None:
            self.fields = encode_field("Content-Type", content_type) + self.fields

    def set_header(self, name: str, value: str | int) -> None:
        """Add a header field (checked: raises :class:`HeaderError` on CR/LF/NUL)."""
        fields, close = encode_fields([(name, str(value))])
        self.fields += fields
        self.close = self.close or close

    def encode(self, connection: bytes, server: bytes, head: bool = False) -> bytes:
        """The bytes on the wire; ``head`` omits the body but keeps its Content-Length."""
        status = self.status
        if has_body(status):
            framing = b"Content-Length: %d\r\n" % len(self.body)
            body = b"" if head else self.body
        else:
            framing = body = b""
        return encode_head(status, self.fields, framing, connection, server) + body

    def __repr__(self) -> str:
        return f"<Response {self.status} {len(self.body)} bytes>"


def encode_simple(field: bytes, body: bytes, connection: bytes, server: bytes, head: bool) -> bytes:
    """200 OK with one Content-Type field: the path a handler returning str/bytes takes."""
    return b"HTTP/1.1 200 OK\r\n%s%s%sContent-Length: %d\r\n%s\r\n%s" % (
        server,
        DATE.line,
        field,
        len(body),
        connection,
        b"" if head else body,
    )


class StreamingResponse:
    """A response whose body is written piece by piece and sent chunked.

    ``write`` and ``end`` may be called from any thread, before or after the handler
    returns the object. Pieces written before the response's turn (earlier pipelined
    responses still going out) are kept and sent in order. To an HTTP/1.0 client the body
    is sent as is and the connection closes at the end (1.0 has no chunked coding).
    ``cancelled`` turns true when the connection closed before ``end``; writes are then
    dropped.
    """

    def __init__(
        self, status: int = 200, headers: HeaderInput = None, content_type: str = TEXT_PLAIN
    ) -> None:
        status_line(status)
        _refuse_bodiless(status, "StreamingResponse")
        self.status = status
        fields, self.close = encode_fields(headers)
        self.fields = encode_field("Content-Type", content_type) + fields
        self.cancelled = False
        self._lock = threading.Lock()
        self._early: list[bytes] = []
        self._ended = False
        self._loop: EventLoop | None = None
        self._out: Callable[[bytes], None] | None = None
        self._done: Callable[[], None] | None = None
        self._chunked = True
        self._head_only = False

    def write(self, data: bytes | str) -> None:
        if isinstance(data, str):
            data = data.encode("utf-8", "surrogateescape")
        if not data:
            return
        with self._lock:
            if self._ended:
                raise RuntimeError("write() after end() on a StreamingResponse")
            loop = self._loop
            if loop is None:
                self._early.append(bytes(data))
                return
        loop.run_in_loop(self._deliver, bytes(data))

    def end(self) -> None:
        """The body is complete. Calling it twice is harmless."""
        with self._lock:
            if self._ended:
                return
            self._ended = True
            loop = self._loop
        if loop is not None:
            loop.run_in_loop(self._finish)

    @property
    def ended(self) -> bool:
        return self._ended

    # -- the server's side (loop thread) ------------------------------------------------

    def bind(
        self,
        loop: EventLoop,
        out: Callable[[bytes], None],
        done: Callable[[], None],
        *,
        chunked: bool,
        head_only: bool,
    ) -> None:
        """The response's turn has come: send what was written so far, then the rest."""
        self._out = out
        self._done = done
        self._chunked = chunked
        self._head_only = head_only
        with self._lock:
            self._loop = loop
            early, self._early = self._early, []
            ended = self._ended
        for data in early:
            self._deliver(data)
        if ended:
            self._finish()

    def cancel(self) -> None:
        """The connection closed: drop whatever is written from now on."""
        self.cancelled = True
        with self._lock:
            self._early.clear()

    def _deliver(self, data: bytes) -> None:
        if self.cancelled or self._head_only or self._out is None:
            return
        if self._chunked:
            self._out(b"%x\r\n%s\r\n" % (len(data), data))
        else:
            self._out(data)

    def _finish(self) -> None:
        if self.cancelled or self._out is None or self._done is None:
            return
        if self._chunked and not self._head_only:
            self._out(CHUNK_END)
        done, self._done = self._done, None
        done()


class FileResponse:
    """A response whose body is (a range of) an open file, sent with ``os.sendfile``.

    The response owns ``fd`` and closes it once sent or abandoned. ``offset``/``length``
    select the bytes (a 206 partial response sets them from a ``Range``).
    """

    def __init__(
        self,
        fd: int,
        *,
        length: int,
        offset: int = 0,
        status: int = 200,
        headers: HeaderInput = None,
        content_type: str = OCTET_STREAM,
    ) -> None:
        status_line(status)
        _refuse_bodiless(status, "FileResponse")
        self.fd = fd
        self.offset = offset
        self.length = length
        self.status = status
        fields, self.close = encode_fields(headers)
        self.fields = encode_field("Content-Type", content_type) + fields

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        *,
        status: int = 200,
        headers: HeaderInput = None,
        content_type: str = OCTET_STREAM,
    ) -> FileResponse:
        """Open a file and serve all of it."""
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            size = os.fstat(fd).st_size
            return cls(fd, length=size, status=status, headers=headers, content_type=content_type)
        except BaseException:
            os.close(fd)
            raise

    def encode_head(self, connection: bytes, server: bytes) -> bytes:
        return encode_head(
            self.status, self.fields, b"Content-Length: %d\r\n" % self.length, connection, server
        )

    def release(self) -> None:
        """Close the file (idempotent)."""
        fd, self.fd = self.fd, -1
        if fd >= 0:
            os.close(fd)


ResponseLike = Response | StreamingResponse | FileResponse | bytes | str
