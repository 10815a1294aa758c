"""What a handler returns, and how it turns into bytes on the wire.

A handler returns a whole :class:`Response`, a streamed (chunked) one, a file, ``str``
(sent as ``text/plain; charset=utf-8``) or ``bytes`` (``application/octet-stream``). The
server adds ``Server``, ``Date``, the framing (``Content-Length`` or
``Transfer-Encoding: chunked``) and ``Connection``; a handler sets everything else, and
every field it sets is checked (see :mod:`ioreactor.http.headers`). The heads are
encoded by :mod:`ioreactor.http.head`, as the ASGI and WSGI responses' are.

Rendering::

    handler result --render(request, result, cache)--> bytes (whole response)
                                                    or StreamingResponse / FileResponse,
                                                       whose head is encoded in its turn

:class:`ResponseCache` (one per server, shared by its connections and loops) keeps what
changes only with ``Date``: the ``Server`` line, the head of a ``200 OK`` text or octet
response up to its ``Content-Length``, and whole keep-alive responses of short texts, so
a handler that returns the same text again costs one dict lookup. Rendering knows no
application: an ASGI or WSGI dispatcher hands over the same response objects (a
``StreamingResponse`` for a body sent in pieces).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING

from ioreactor.http.date import DATE
from ioreactor.http.errors import HttpError
from ioreactor.http.head import (
    connection_field,
    encode_head,
    framing_field,
    has_body,
    status_line,
)
from ioreactor.http.headers import HeaderError, encode_field

if TYPE_CHECKING:
    from ioreactor.http.request import Request
    from ioreactor.loop.event_loop import EventLoop

log = logging.getLogger("ioreactor.http")

HeaderInput = Mapping[str, str] | Iterable[tuple[str, str]] | None

TEXT_PLAIN = "text/plain; charset=utf-8"
OCTET_STREAM = "application/octet-stream"
TEXT_FIELD = b"Content-Type: text/plain; charset=utf-8\r\n"
OCTET_FIELD = b"Content-Type: application/octet-stream\r\n"
CHUNK_END = b"0\r\n\r\n"
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
#: Fields only the server writes: a handler setting them could break the message framing.
_SERVER_FIELDS = frozenset({"content-length", "transfer-encoding", "date", "server"})


def handler_head(
    status: int, fields: bytes, framing: bytes, connection: bytes, server: bytes
) -> bytes:
    """The head of a handler's response: its status line, always the server's Server
    and Date, then its fields, ``framing`` and ``connection``."""
    return encode_head(status_line(status), server, DATE.line, fields, framing, connection)


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
        body = self.body
        data = handler_head(
            status, self.fields, framing_field(status, len(body), False), connection, server
        )
        return data + body if body and not head and has_body(status) else data

    def __repr__(self) -> str:
        return f"<Response {self.status} {len(self.body)} bytes>"


def encode_simple(field: bytes, body: bytes, connection: bytes, server: bytes, head: bool) -> bytes:
    """200 OK with one Content-Type field: the path a handler returning str/bytes takes
    when the cache's whole responses do not fit (HEAD, HTTP/1.0, a closing exchange)."""
    data = handler_head(200, field, framing_field(200, len(body), False), connection, server)
    return data if head else data + body


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

    def encode_head(self, connection: bytes, server: bytes, *, chunked: bool) -> bytes:
        """Status line and fields; ``chunked`` frames the body (HTTP/1.1), else the end of
        the connection ends it (HTTP/1.0)."""
        status = self.status
        return handler_head(
            status, self.fields, framing_field(status, -1, chunked), connection, server
        )

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
        status = self.status
        framing = framing_field(status, self.length, False)
        return handler_head(status, self.fields, framing, connection, server)

    def release(self) -> None:
        """Close the file (idempotent)."""
        fd, self.fd = self.fd, -1
        if fd >= 0:
            os.close(fd)


ResponseLike = Response | StreamingResponse | FileResponse | bytes | str

#: Texts of at most this many bytes have their whole response cached (per second).
TEXT_CACHE_BODY = 256
#: At most this many of them (a handler returning ever new texts fills it once a second).
TEXT_CACHE_ENTRIES = 64


class ResponseCache:
    """What one server's responses share and what changes only with ``Date``.

    One per server, given to each of its connections; loops on other threads may share
    it (each store is one attribute or dict operation under the GIL). :meth:`tick` runs
    from every loop's sweep once per ``Limits.sweep_interval``.
    """

    __slots__ = ("_date", "_octet_prefix", "_text", "server", "texts")

    def __init__(self, server_name: str) -> None:
        #: The ``Server`` field line.
        self.server = encode_field("Server", server_name)
        #: The ``200 OK`` head of a text response up to the Content-Length value, for the
        #: current Date, and the whole keep-alive responses of short texts built with it:
        #: replaced together, as one tuple, when the second changes.
        self._text: tuple[bytes, dict[str, bytes]] = (b"", {})
        #: The cache of ``_text``: text -> whole response, for the lookup on every text
        #: response (``texts.get(text) or text_response(text)``).
        self.texts: dict[str, bytes] = self._text[1]
        #: The same head for an ``application/octet-stream`` body (a handler's ``bytes``).
        self._octet_prefix = b""
        self._date = b""
        self.tick()

    def tick(self) -> None:
        """Refresh the cached Date (and what is built from it)."""
        DATE.refresh()
        line = DATE.line
        if line is not self._date:
            self._date = line
            prefix = b"HTTP/1.1 200 OK\r\n%s%s%sContent-Length: " % (self.server, line, TEXT_FIELD)
            # The tuple first: a lookup that misses the old cache builds with the new head.
            self._text = (prefix, {})
            self.texts = self._text[1]
            self._octet_prefix = prefix.replace(TEXT_FIELD, OCTET_FIELD)

    def text_response(self, text: str) -> bytes:
        """The whole keep-alive HTTP/1.1 ``200 OK`` response with ``text`` as its body
        (kept in ``texts`` until the Date changes, when short)."""
        prefix, cache = self._text
        body = text.encode("utf-8", "surrogateescape")
        data = b"%s%d\r\n\r\n%s" % (prefix, len(body), body)
        if len(body) <= TEXT_CACHE_BODY and len(cache) < TEXT_CACHE_ENTRIES:
            cache[text] = data
        return data

    def octet_response(self, body: bytes) -> bytes:
        """The whole keep-alive HTTP/1.1 ``200 OK`` response with ``body`` as it is."""
        return b"%s%d\r\n\r\n%s" % (self._octet_prefix, len(body), body)


def error_response(err: HttpError) -> Response:
    """The response for an :class:`HttpError`: its status and detail as text."""
    response = Response(
        f"{err.status} {err.detail}".rstrip() + "\n", err.status, headers=err.headers
    )
    response.close = response.close or err.close  # HttpError(close=True) ends the connection
    return response


def render(
    request: Request, result: object, cache: ResponseCache
) -> bytes | StreamingResponse | FileResponse:
    """A handler's ``result`` for ``request``: the whole response as bytes, or a streamed
    or file response (its head is encoded when its turn comes).

    A response that closes the connection (``Connection: close`` from the handler) sets
    ``request.keep_alive`` to False. A result of any other type is logged and answered
    500.
    """
    head = request.method == "HEAD"
    if type(result) is str:
        if request.keep_alive and request.version == "1.1" and not head:
            # The common case: the whole response built once per second (short texts).
            return cache.texts.get(result) or cache.text_response(result)
        body = result.encode("utf-8", "surrogateescape")
        return encode_simple(TEXT_FIELD, body, connection_field(request), cache.server, head)
    if type(result) is bytes:
        if request.keep_alive and request.version == "1.1" and not head:
            return cache.octet_response(result)
        return encode_simple(OCTET_FIELD, result, connection_field(request), cache.server, head)
    if type(result) is Response:
        if result.close:
            request.keep_alive = False
        return result.encode(connection_field(request), cache.server, head)
    if isinstance(result, StreamingResponse | FileResponse):
        if result.close:
            request.keep_alive = False
        return result
    if isinstance(result, Response):  # a dispatcher's own whole response (WSGI's framing)
        if result.close:
            request.keep_alive = False
        return result.encode(connection_field(request), cache.server, head)
    log.error(
        "handler for %s %s returned %r, not a response", request.method, request.path, type(result)
    )
    return render(request, error_response(HttpError(500, "Internal Server Error")), cache)


def describe(result: object) -> tuple[int, int]:
    """``(status, body size)`` of a handler's result for the access log (size -1 when
    not known in advance)."""
    if isinstance(result, str):
        return 200, len(result.encode("utf-8", "surrogateescape"))
    if isinstance(result, bytes):
        return 200, len(result)
    if isinstance(result, Response):
        return result.status, len(result.body)
    if isinstance(result, FileResponse):
        return result.status, result.length
    if isinstance(result, StreamingResponse):
        return result.status, -1
    return 500, -1
