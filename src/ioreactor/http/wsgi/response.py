"""A WSGI application's response: ``start_response``, ``write`` and the body iterable,
turned into what the connection's response queue sends.

Data flow (on the pool thread that runs the application)::

    start_response(status, headers[, exc_info]) --> ResponseWriter: status line, fields,
        Content-Length, close (checked: PEP 3333 and RFC 9110 field syntax)
    write(data) / each block of the iterable --> ResponseWriter.write:
        the body complete (Content-Length reached, or the iterable is a list/tuple)
            --> buffered; at the end one WsgiResponse (whole: one send on the loop)
        otherwise --> WsgiStream (head + blocks as they come, chunked without a length),
            posted to the loop at once; the thread waits while it is more than the
            connection's high water mark ahead of the reader (bounded by write_timeout)
    wsgi.file_wrapper(file) returned as the iterable --> WsgiFile (os.sendfile)

The connection writes ``Server``, ``Date`` and ``Connection``; an application's own
``Date``/``Server`` fields and hop-by-hop fields (``Connection``, ``Transfer-Encoding``,
``Keep-Alive``...) are dropped (``Connection: close`` from the application still closes
the connection after the response), as gunicorn drops hop-by-hop fields. More body
than ``Content-Length`` is cut; less ends the connection after what was sent (the
client must not wait for bytes that will not come). HEAD, 1xx, 204 and 304 responses
carry no body (the application's blocks are dropped); 1xx and 204 no Content-Length.
"""

from __future__ import annotations

import logging
import os
import re
import stat
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from ioreactor.http.date import DATE
from ioreactor.http.head import CHUNKED_FIELD, encode_head, framing_field, has_body
from ioreactor.http.headers import HeaderError, encode_field
from ioreactor.http.response import FileResponse, Response, StreamingResponse

if TYPE_CHECKING:
    from types import TracebackType

    from ioreactor.loop.event_loop import EventLoop
    from ioreactor.net.connection import TcpConnection

log = logging.getLogger("ioreactor.http.wsgi")

#: RFC 9112 status-line after the version: 3 digits, a space, a reason of visible
#: characters, spaces and tabs (PEP 3333 asks for the reason; gunicorn accepts none).
_STATUS = re.compile(r"([1-9][0-9]{2})(?: [ \t\x21-\x7e\x80-\xff]*)?\Z")
#: Hop-by-hop fields (RFC 9110 7.6.1): the server's, never the application's.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
    }
)
#: Fields the connection writes itself.
SERVER_FIELDS = frozenset({"date", "server"})
#: Status strings seen -> their status line (the table starts over when full).
STATUS_LINE_ENTRIES = 256
_status_lines: dict[str, tuple[int, bytes]] = {}
#: Seconds between checks, while a thread waits for a slow reader, that it drained;
#: each unanswered check doubles the wait up to ROOM_POLL_MAX.
ROOM_POLL = 0.005
ROOM_POLL_MAX = 0.2

ExcInfo = tuple[type[BaseException], BaseException, "TracebackType | None"]


class ClientGone(Exception):
    """The connection closed while the application's response was being sent."""


def status_of(status: object) -> tuple[int, bytes]:
    """``(code, status line)`` of a WSGI status string such as ``"200 OK"``."""
    if type(status) is not str:
        raise TypeError(f"the status must be a str, got {status!r}")
    known = _status_lines.get(status)
    if known is not None:
        return known
    match = _STATUS.match(status)
    if match is None:
        raise ValueError(f"invalid status {status!r}")
    known = int(match.group(1)), b"HTTP/1.1 %s\r\n" % status.encode("latin-1")
    if len(_status_lines) >= STATUS_LINE_ENTRIES:
        _status_lines.clear()
    _status_lines[status] = known
    return known


def carries_body(method: str, code: int) -> bool:
    """Whether the response to ``method`` with status ``code`` has a body on the wire."""
    return method != "HEAD" and has_body(code)


class FileWrapper:
    """``wsgi.file_wrapper``: a file the server may send with ``os.sendfile``.

    Iterated, it reads ``blksize`` blocks (what happens when it cannot be sent
    zero-copy: no ``fileno``, not a regular file, TLS, a body already started).
    """

    def __init__(self, filelike: Any, blksize: int = 8192) -> None:
        self.filelike = filelike
        self.blksize = blksize

    def __iter__(self) -> Iterator[bytes]:
        read = self.filelike.read
        while True:
            block = read(self.blksize)
            if not block:
                return
            yield block

    def close(self) -> None:
        close = getattr(self.filelike, "close", None)
        if close is not None:
            close()

    def regular_fd(self) -> int | None:
        """The file's descriptor if it is a regular file (sendfile can send it)."""
        fileno = getattr(self.filelike, "fileno", None)
        if fileno is None:
            return None
        try:
            fd = fileno()
            if not isinstance(fd, int) or not stat.S_ISREG(os.fstat(fd).st_mode):
                return None
        except (OSError, ValueError):
            return None
        return fd


class WsgiResponse(Response):
    """A whole response as the application framed it: its status line and fields (its
    ``Content-Length`` included, or ``Transfer-Encoding: chunked`` and a framed body).
    The connection adds ``Server``, ``Date`` and ``Connection`` when it renders it."""

    __slots__ = ("line",)

    def __init__(self, code: int, line: bytes, fields: bytes, body: bytes, close: bool) -> None:
        self.status = code
        self.line = line
        self.fields = fields
        self.body = body
        self.close = close

    def encode(self, connection: bytes, server: bytes, head: bool = False) -> bytes:
        data = encode_head(self.line, server, DATE.line, self.fields, b"", connection)
        return data if head else data + self.body

    def __repr__(self) -> str:
        return f"<WsgiResponse {self.status} {len(self.body)} bytes>"


class WsgiStream(StreamingResponse):
    """A response whose body the application's thread writes while the client reads.

    Framed by the application's ``Content-Length`` when it gave one, else chunked (or,
    to an HTTP/1.0 client, ended by the close). ``delivered`` counts the bytes handed to
    the connection, so the writing thread knows how far ahead of the reader it is.
    """

    def __init__(
        self,
        code: int,
        line: bytes,
        fields: bytes,
        length: int | None,
        close: bool,
        conn: TcpConnection,
    ) -> None:
        super().__init__(code)
        self.line = line
        self.fields = fields
        self.length = length
        self.close = close
        self.conn = conn
        self.delivered = 0
        #: Set while the writing thread may go on (see ResponseWriter.wait_for_room).
        self.room = threading.Event()
        self._bound = False
        self._aborted = False

    def encode_head(self, connection: bytes, server: bytes, *, chunked: bool) -> bytes:
        # With a length, the application's Content-Length is among the fields.
        framing = framing_field(self.status, -1, chunked and self.length is None)
        return encode_head(self.line, server, DATE.line, self.fields, framing, connection)

    def bind(
        self,
        loop: EventLoop,
        out: Callable[[bytes], None],
        done: Callable[[], None],
        *,
        chunked: bool,
        head_only: bool,
    ) -> None:
        def counted(data: bytes) -> None:
            self.delivered += len(data)
            out(data)

        self._bound = True
        super().bind(
            loop, counted, done, chunked=chunked and self.length is None, head_only=head_only
        )
        if self._aborted:
            self.conn.close()

    def cancel(self) -> None:
        super().cancel()
        self.room.set()

    def abort(self) -> None:
        """The body cannot be completed (the application failed, or gave less than its
        Content-Length): what was written goes out, then the connection closes -- no
        terminating chunk, so the client sees a truncated response, not a short one."""
        loop = self.conn.loop
        loop.call_soon_threadsafe(self._abort_in_loop)

    def _abort_in_loop(self) -> None:
        self._aborted = True
        if self._bound:
            self.conn.close()  # after the blocks already posted (the loop runs them first)

    def watch_room(self, writer: ResponseWriter, delay: float) -> None:
        """Loop thread: wake the writer once the reader is within the low water mark."""
        conn = self.conn
        if self.cancelled or conn.closed or writer.ahead() <= conn.low_water_mark:
            self.room.set()
        else:
            conn.loop.call_later(delay, self.watch_room, writer, min(2 * delay, ROOM_POLL_MAX))


class WsgiFile(FileResponse):
    """A ``wsgi.file_wrapper`` body sent with ``os.sendfile`` from the file's position."""

    def __init__(
        self, fd: int, offset: int, length: int, code: int, line: bytes, fields: bytes, close: bool
    ) -> None:
        super().__init__(fd, length=length, offset=offset, status=code)
        self.line = line
        self.fields = fields
        self.close = close

    def encode_head(self, connection: bytes, server: bytes) -> bytes:
        return encode_head(self.line, server, DATE.line, self.fields, b"", connection)


class ResponseWriter:
    """The response of one application call, as the application gives it (thread side).

    ``post(answer)`` hands an answer to the loop before the call returns (a stream);
    the call's final answer is what :meth:`finish` returns.
    """

    __slots__ = (
        "_post",
        "chunked_ok",
        "close",
        "code",
        "conn",
        "fields",
        "gather",
        "length",
        "line",
        "method",
        "omit",
        "parts",
        "stream",
        "taken",
        "write_timeout",
    )

    def __init__(
        self,
        method: str,
        version: str,
        conn: TcpConnection,
        post: Callable[[object], None],
        write_timeout: float,
    ) -> None:
        self.method = method
        self.chunked_ok = version == "1.1"
        self.conn = conn
        self._post = post
        self.write_timeout = write_timeout
        self.code = 0
        self.line = b""
        self.fields = b""
        self.length: int | None = None
        self.close = False
        #: No body on the wire (HEAD, 1xx, 204, 304): blocks are dropped.
        self.omit = False
        self.parts: list[bytes] = []
        #: Body bytes accepted so far (buffered or streamed).
        self.taken = 0
        self.stream: WsgiStream | None = None
        #: Every block is at hand (the iterable is a list or tuple): buffer them all.
        self.gather = False

    @property
    def started(self) -> bool:
        """``start_response`` has been called."""
        return self.code != 0

    @property
    def head_sent(self) -> bool:
        return self.stream is not None

    # -- what the application calls ------------------------------------------------------

    def start_response(
        self, status: str, headers: list[tuple[str, str]], exc_info: ExcInfo | None = None
    ) -> Callable[[bytes], None]:
        if exc_info is not None:
            try:
                if self.stream is not None:  # too late to change the response: re-raise
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None
        elif self.code:
            raise AssertionError("start_response() called twice without exc_info (PEP 3333)")
        code, line = status_of(status)
        fields, length, close = self._fields(headers, code)
        self.code, self.line, self.fields, self.length, self.close = (
            code,
            line,
            fields,
            length,
            close,
        )
        self.omit = not carries_body(self.method, code)
        self.parts = []
        self.taken = 0
        return self.write

    def _fields(self, headers: object, code: int) -> tuple[bytes, int | None, bool]:
        if type(headers) is not list:
            raise TypeError(f"the headers must be a list of (name, value), got {headers!r}")
        lines = []
        length = None
        close = False
        for pair in headers:
            if type(pair) is not tuple or len(pair) != 2:
                raise TypeError(f"a header must be a (name, value) tuple, got {pair!r}")
            name, value = pair
            if type(name) is not str or type(value) is not str:
                raise TypeError(f"header name and value must be str, got {pair!r}")
            lower = name.lower()
            if lower == "content-length":
                text = value.strip(" \t")
                if not text.isdigit() or not text.isascii():
                    raise HeaderError(f"Content-Length {value!r} is not a length")
                if code < 200 or code == 204:
                    continue  # RFC 9110 8.6: none on 1xx and 204
                length = int(text)
            elif lower in HOP_BY_HOP:
                if lower == "connection" and "close" in value.lower():
                    close = True
                continue
            elif lower in SERVER_FIELDS:
                continue
            lines.append(encode_field(name, value))
        return b"".join(lines), length, close

    def write(self, data: bytes) -> None:
        """PEP 3333's ``write()``, and each block of the iterable."""
        if type(data) is not bytes:
            raise TypeError(f"the body must be bytes, got {type(data).__name__}")
        if not self.code:
            raise AssertionError("body before start_response() (PEP 3333)")
        if not data or self.omit:
            return
        length = self.length
        if length is not None:
            room = length - self.taken
            if room <= 0:
                return  # past Content-Length: cut
            if len(data) > room:
                data = data[:room]
        self.taken += len(data)
        stream = self.stream
        if stream is None:
            if self.gather or self.taken == length:
                self.parts.append(data)  # complete: one whole response at the end
                return
            stream = self._open_stream()
        stream.write(data)
        self.wait_for_room(stream)

    # -- the server's side -----------------------------------------------------------------

    def _open_stream(self) -> WsgiStream:
        stream = self.stream = WsgiStream(
            self.code, self.line, self.fields, self.length, self.close, self.conn
        )
        for part in self.parts:
            stream.write(part)
        self.parts = []
        self._post(stream)
        return stream

    def ahead(self) -> int:
        """Bytes written by the application that the reader has not taken yet."""
        stream = self.stream
        if stream is None:
            return 0
        return max(0, self.taken - stream.delivered) + self.conn.output_size

    def wait_for_room(self, stream: WsgiStream) -> None:
        """Block while the body is more than the high water mark ahead of the reader
        (at most ``write_timeout`` without progress; ClientGone if it closed)."""
        if stream.cancelled:
            raise ClientGone("the connection closed")
        conn = self.conn
        if self.ahead() <= conn.high_water_mark:
            return
        progress = stream.delivered, conn.output_size
        waited = 0.0
        while True:
            stream.room.clear()
            conn.loop.call_soon_threadsafe(stream.watch_room, self, ROOM_POLL)
            if stream.room.wait(min(1.0, self.write_timeout)):
                if stream.cancelled:
                    raise ClientGone("the connection closed")
                return
            now = stream.delivered, conn.output_size
            waited = 0.0 if now != progress else waited + min(1.0, self.write_timeout)
            progress = now
            if waited >= self.write_timeout:
                stream.abort()
                raise ClientGone(f"the client took nothing for {self.write_timeout:g} s")

    def file_answer(self, wrapper: FileWrapper) -> WsgiFile | WsgiResponse | None:
        """A WsgiFile for a ``wsgi.file_wrapper`` returned as the iterable, when it can
        go zero-copy (a regular file, a body not started), or the bodiless answer to a
        HEAD with the file's length (the file is not read); None: iterate it instead."""
        if not self.code or self.taken or self.stream is not None:
            return None
        fd = wrapper.regular_fd()
        if fd is None:
            return None
        try:
            offset = os.lseek(fd, 0, os.SEEK_CUR)
            remaining = max(0, os.fstat(fd).st_size - offset)
        except OSError:
            return None
        fields = self.fields
        if self.length is None and has_body(self.code):
            length = remaining
            fields += b"Content-Length: %d\r\n" % length
        else:
            length = self.length or 0  # a file shorter than promised ends the connection
        if self.omit:
            return WsgiResponse(self.code, self.line, fields, b"", self.close)
        dup = os.dup(fd)
        try:
            return WsgiFile(dup, offset, length, self.code, self.line, fields, self.close)
        except BaseException:
            os.close(dup)
            raise

    def finish(self) -> WsgiResponse | None:
        """The iterable is exhausted: the whole response, or None once a stream carries
        it (ended here; aborted when it fell short of its Content-Length)."""
        if not self.code:
            raise AssertionError("the application returned without calling start_response()")
        stream = self.stream
        if stream is not None:
            if self.length is not None and self.taken < self.length:
                log.warning(
                    "WSGI response shorter than its Content-Length (%d of %d bytes); "
                    "closing the connection",
                    self.taken,
                    self.length,
                )
                stream.abort()
            else:
                stream.end()
            return None
        body = self.parts[0] if len(self.parts) == 1 else b"".join(self.parts)
        fields = self.fields
        close = self.close
        if self.omit:
            body = b""
        elif self.length is not None:
            if self.taken < self.length:
                log.warning(
                    "WSGI response shorter than its Content-Length (%d of %d bytes); "
                    "closing the connection",
                    self.taken,
                    self.length,
                )
                close = True
        elif self.chunked_ok:
            fields += CHUNKED_FIELD
            body = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body) if body else b"0\r\n\r\n"
        else:
            close = True  # HTTP/1.0 without a length: the close ends the body
        return WsgiResponse(self.code, self.line, fields, body, close)
