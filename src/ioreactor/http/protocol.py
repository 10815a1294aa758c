"""HTTP/1.1 on one connection: the httptools parser glue, requests in, responses out in order.

One :class:`HttpProtocol` per connection (in ``conn.context``) owns one
``httptools.HttpRequestParser``. Every read is fed to it straight from the connection's
input buffer (``peek`` then ``retrieve``); requests may be split at any byte or arrive
many per read, and the parser's callbacks assemble each into a :class:`Request`.

Responses leave in request order. A handler that answers on the loop while nothing is
waiting ahead of it sends at once -- ``conn.send`` queues it, and everything queued
during one loop iteration leaves in one system call, so 16 pipelined requests cost one
``send``. Otherwise the response waits in ``pending`` behind the ones before it: a
handler still running in the worker pool, a streamed body, a file being sent.

The connection's life, as ``phase``::

    IDLE -> HEADERS -> BODY -> IDLE ...    one request at a time
    any  -> DONE      no more input is parsed: the last response is queued

``HEADERS`` is set only when a read ends inside a head (a head that arrives whole never
needs it); a plain request without a body is answered from IDLE by its head.
         -> LINGER    FIN once output drains; read and discard until the peer closes

Every protocol error or broken limit answers with its status and ``Connection: close``,
then the connection lingers and closes; the rest of its input is never parsed (no
request smuggling). Timeouts are not timers: one sweep per loop calls
:meth:`HttpProtocol.check_timeouts` every ``Limits.sweep_interval``.
"""

from __future__ import annotations

import functools
import logging
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, cast

import httptools

from ioreactor.http.errors import HttpError
from ioreactor.http.request import (
    NO_PARAMS,
    BodyConsumer,
    Request,
    incoming,
    new_request,
    split_target,
)
from ioreactor.http.response import (
    CHUNKED_FIELD,
    CLOSE_FIELD,
    CONTINUE,
    KEEP_ALIVE_FIELD,
    OCTET_FIELD,
    TEXT_FIELD,
    FileResponse,
    Response,
    StreamingResponse,
    encode_head,
    encode_simple,
)
from ioreactor.http.sendfile import FileSender

if TYPE_CHECKING:
    from concurrent.futures import Future

    from ioreactor.http.handler import HttpHandler
    from ioreactor.http.router import Route
    from ioreactor.loop.event_loop import EventLoop
    from ioreactor.net.buffer import Buffer
    from ioreactor.net.connection import TcpConnection

log = logging.getLogger("ioreactor.http")
access_log = logging.getLogger("ioreactor.http.access")

IDLE = 0
HEADERS = 1
BODY = 2
DONE = 3
LINGER = 4

#: Input fed to the parser per call when much arrives at once. httptools cannot pause in
#: the middle of a feed, so a burst of pipelined requests is parsed a slice at a time and
#: stops between slices once too many responses wait or too much output is queued: a
#: client that pipelines small requests for large responses and never reads them gets
#: at most one slice's worth of responses past the connection's high water mark.
FEED_SLICE = 4 * 1024
#: Seconds before the first check for drained output while parsing is paused on it;
#: each check that finds the output still full doubles the wait, up to RESUME_POLL_MAX
#: (a client that never reads costs a few checks a second until the write timeout, not
#: a hundred).
RESUME_POLL = 0.01
RESUME_POLL_MAX = 0.32

_METHODS = {
    m.encode(): m
    for m in ("GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "TRACE", "CONNECT")
}


class _CloseMarker:
    """In the pending queue: close the connection here; later entries are dropped."""


_CLOSE = _CloseMarker()
#: The fields of a head without any (shared, never changed).
_NO_FIELDS: list[bytes] = []
#: ``body`` of a request whose body is kept, before its first chunk (no list per GET).
_COLLECT: list[bytes] = []
#: The field names the protocol itself must look at, and their lengths (a length check is
#: cheaper than lower(), and most fields fail it).
_SPECIAL_FIELDS = frozenset(
    {b"expect", b"upgrade", b"connection", b"content-length", b"transfer-encoding"}
)
_SPECIAL_LENGTHS = frozenset(len(name) for name in _SPECIAL_FIELDS)


class _StopParsing(Exception):
    """Raised from a parser callback: the connection is closing, ignore the rest."""


class _Slot:
    """A response position in the pending queue: not computed yet, or not sent yet."""

    __slots__ = ("request", "result")

    def __init__(self, request: Request, result: object = None) -> None:
        self.request = request
        #: None until ready; then the response bytes, a StreamingResponse or FileResponse.
        self.result = result


def error_response(err: HttpError) -> Response:
    response = Response(
        f"{err.status} {err.detail}".rstrip() + "\n",
        err.status,
        headers=err.headers,
    )
    response.close = response.close or err.close  # HttpError(close=True) ends the connection
    return response


def _parser_error(exc: httptools.HttpParserError) -> HttpError:
    message = str(exc)
    if "HTTP version" in message:
        return HttpError(505, message, close=True)
    return HttpError(400, message or "Bad Request", close=True)


class HttpProtocol:
    """The HTTP state of one connection; see the module docstring."""

    # Slots in the order of use on the short path, the hot ones first: an object's slots
    # lie in that order, so a request touches two cache lines of it, not five (it
    # counts with thousands of connections, when the protocol is rarely in cache).
    __slots__ = (  # noqa: RUF023  (order of use, not of name)
        "phase",
        "paused",
        "careful",
        "hosts",
        "special",
        "parser",
        "raw",
        "url",
        "routes",
        "http",
        "conn",
        "requests_left",
        "batch",
        "pending",
        "head_fed",
        "body_fed",
        "callbacks",
        "active",
        "advancing",
        "body",
        "body_size",
        "consumer",
        "failure",
        "limits",
        "loop",
        "request",
        "route",
        "sender",
        "server",
        "since",
        "stall_mark",
        "stall_since",
        "eof_held",
        "resume_delay",
        "pool_busy",
        "pool_waiting",
    )

    def __init__(self, conn: TcpConnection, http: HttpHandler) -> None:
        self.conn = conn
        self.loop = conn.loop
        self.http = http
        self.limits = http.limits
        self.server = http.server_line
        # With the access log on, every request takes the general path (which logs).
        self.routes = {} if http.access_log else http.router.plain
        #: The callbacks its parser calls, shared by the connections of this loop.
        self.callbacks = loop_callbacks(conn.loop)
        self.parser = httptools.HttpRequestParser(self.callbacks)
        self.phase = IDLE
        self.since = conn.loop.now
        self.url = b""
        #: The current head's fields, flat: name, value, name, value... (None until its
        #: first field: an idle connection holds no list, and a request's list is new).
        self.raw: list[bytes] | None = None
        #: Bytes fed since a read first ended inside the current head; -1 while the head
        #: in progress (if any) began in the current read.
        self.head_fed = -1
        #: Bytes read while in the BODY phase: bounds what no other limit counts (chunk
        #: extensions, which llhttp skips without a limit: CVE-2024-22019 in Node.js).
        self.body_fed = 0
        #: Heads parsed from now on take the general path, which checks everything: set
        #: per read when a head began in an earlier read or the read is larger than
        #: ``HttpHandler.small_read``, and by on_header for a field the protocol must act on.
        self.careful = False
        #: ``Host`` fields in the current head (the short path takes exactly one).
        self.hosts = 0
        self.special = False
        self.request: Request | None = None
        self.route: Route | None = None
        self.failure: HttpError | None = None
        self.consumer: BodyConsumer | None = None
        self.body: list[bytes] | None = None
        self.body_size = 0
        #: Responses waiting for their turn, oldest first; None when there are none (no
        #: list on an idle connection, and the short path tests it without touching one).
        self.pending: list[bytes | _Slot | _CloseMarker] | None = None
        self.active: _Slot | None = None
        self.sender: FileSender | None = None
        self.advancing = False
        self.paused = False
        #: The peer half-closed while input was held unparsed (parsing paused): the
        #: connection finishes once that input has been parsed.
        self.eof_held = False
        #: The current wait between checks for drained output (see RESUME_POLL).
        self.resume_delay = RESUME_POLL
        #: A blocking handler of this connection is running in the pool; the requests
        #: parsed meanwhile for blocking routes wait here, in order (None when none).
        self.pool_busy = False
        self.pool_waiting: list[tuple[_Slot, Callable[[Request], object]]] | None = None
        self.requests_left = self.limits.max_requests_per_connection
        self.batch: list[bytes] | None = None
        self.stall_mark = -1.0
        self.stall_since = 0.0

    def __repr__(self) -> str:
        waiting = len(self.pending or ())
        return f"<HttpProtocol {self.conn.peer} phase={self.phase} pending={waiting}>"

    # -- input -----------------------------------------------------------------------------

    def feed(self, buffer: Buffer) -> None:
        """Parse what arrived; the responses it produces leave in one ``conn.send``."""
        receive(self.http, self.conn, buffer)

    def _feed_held(self, buffer: Buffer) -> None:
        """Input while no more is parsed, or while parsing waits for output to drain."""
        if self.phase >= DONE:
            buffer.retrieve_all()
            return
        conn = self.conn
        pending = self.pending
        if conn.output_size <= conn.low_water_mark and not (
            pending and len(pending) >= self.limits.max_pending_responses
        ):
            # The output drained (so the connection reads again) before the resume poll
            # came: parse now instead of holding input a reading peer may send.
            self._unpause()
            receive(self.http, conn, buffer)
            self._finish_after_held_input()
        elif len(buffer) > self.limits.max_buffered_input:
            log.debug("%r: input keeps growing while paused; dropping", self)
            conn.force_close()

    def _feed_large(self, buffer: Buffer) -> None:
        """Much input at once: parse it in slices (see ``FEED_SLICE``), each slice's
        responses queued on the connection before the next is parsed, and stop when
        responses pile up or the output crosses the high water mark."""
        n = len(buffer)
        consumed = 0
        conn = self.conn
        with buffer.peek() as data:
            while consumed < n and self.phase < DONE:
                with data[consumed : consumed + FEED_SLICE] as piece:
                    receive_read(self.http, conn, piece)
                consumed += FEED_SLICE
                if self.paused:
                    break  # responses piled up: _advance() resumes once they went out
                if conn.output_size >= conn.high_water_mark:
                    self.paused = True
                    self.resume_delay = RESUME_POLL
                    self.loop.call_later(RESUME_POLL, self._resume)
                    break
        if consumed >= n or self.phase >= DONE:
            buffer.retrieve_all()
        else:
            buffer.retrieve(consumed)

    def _bound_head(self, fed: int) -> None:
        """A read ended inside a request head (its target is known: ``url``). httptools
        joins a field split across reads before it calls on_header: bound the bytes it
        holds, not only the fields seen."""
        self.phase = HEADERS
        if self.head_fed < 0:
            # The head began in this read; the read's size bounds it. Its header timeout
            # runs from now (a head that ends in the read it began in needs no clock).
            self.head_fed = 0
            self.since = self.loop.now
            return
        self.head_fed += fed
        limits = self.limits
        if self.head_fed > limits.max_request_line + limits.max_header_bytes:
            self._fail(HttpError(431, "Request Header Fields Too Large", close=True))

    def _bound_body(self, fed: int) -> None:
        """A read ended inside a request body: the bytes of the body phase may exceed
        ``max_body`` by at most ``max_body + max_header_bytes`` of chunk framing and
        extensions (a chunked body of small chunks doubles in size on the wire; the body
        itself is held to ``max_body`` by ``on_body``)."""
        self.body_fed += fed
        limits = self.limits
        if self.body_fed > 2 * limits.max_body + limits.max_header_bytes:
            self._fail(HttpError(413, "Content Too Large", close=True))

    def _parser_failed(self, exc: httptools.HttpParserError) -> None:
        if isinstance(exc, httptools.HttpParserCallbackError):
            cause = exc.__context__
            if isinstance(cause, HttpError):
                self._fail(cause)
            elif not isinstance(cause, _StopParsing):
                log.error("%r: error in a parser callback", self, exc_info=cause)
                self._fail(HttpError(500, "Internal Server Error", close=True))
        else:
            self._fail(_parser_error(exc))

    def _resume(self) -> None:
        """Parse the input kept while paused, once responses and output have drained."""
        conn = self.conn
        if not self.paused or conn.closed or self.phase >= DONE:
            return
        if conn.output_size > conn.low_water_mark:
            self.resume_delay = delay = min(2 * self.resume_delay, RESUME_POLL_MAX)
            self.loop.call_later(delay, self._resume)
            return
        if self.pending and len(self.pending) >= self.limits.max_pending_responses:
            return  # _advance() calls again when one goes out
        self._unpause()
        if len(conn.input):
            self.feed(conn.input)
        self._finish_after_held_input()

    def _unpause(self) -> None:
        """Parsing goes on. A head or body it stopped in the middle of gets its deadline
        from now: the wait was the server's (responses or output draining), not the
        client's."""
        self.paused = False
        if self.phase == HEADERS or self.phase == BODY:
            self.since = self.loop.now

    def _send(self, data: bytes) -> None:
        """Send now: into this read's batch while parsing, else straight to the connection."""
        batch = self.batch
        if batch is not None:
            batch.append(data)
        else:
            self.conn.send(data)

    def _flush_batch(self) -> None:
        batch = self.batch
        if batch:
            self.conn.send(b"".join(batch))
            batch.clear()

    def _general_head(self, raw: list[bytes], url: bytes) -> Request:
        """Every head the short path does not take: checks it, builds its Request."""
        self.special = True
        self.head_fed = -1  # the next head begins in the read it is seen in
        parser = self.parser
        limits = self.limits
        if self.careful and sum(map(len, raw)) + 2 * len(raw) > limits.max_header_bytes:
            raise HttpError(431, "Request Header Fields Too Large", close=True)
        method_raw = parser.get_method()
        method = _METHODS.get(method_raw) or method_raw.decode("ascii")
        keep_alive = parser.should_keep_alive()
        if self.careful or not keep_alive or method == "CONNECT":
            version, keep_alive, send_continue = self._inspect(raw, method, keep_alive)
        else:
            version = "1.1"  # as on the short path
            send_continue = False
        hosts = self.hosts
        self.hosts = 0
        if hosts > 1 or (hosts == 0 and version == "1.1"):
            # RFC 9112 3.2: a 1.1 request names exactly one host; several are ambiguous
            # (which one does a proxy in front of us route by?).
            raise HttpError(400, f"{hosts} Host fields: exactly one is required", close=True)
        target = url.decode("latin-1")
        path, query = split_target(target)
        request = incoming(method, target, path, query, raw, self.conn.peer, version)
        request.keep_alive = keep_alive
        self.body = _COLLECT
        self.body_size = 0
        if send_continue:
            self._emit(CONTINUE)
        self.request = request
        return request

    def _general_route(self, request: Request) -> None:
        """Route a request the plain-route table does not answer: path parameters, HEAD,
        404/405, handlers that run in the pool or take the body as a stream."""
        self.special = True
        self.body_size = 0
        try:
            route, request.params = self.http.router.resolve(request.method, request.path)
        except HttpError as exc:
            self.failure = exc.with_traceback(None)
            self.route = None
            self.body = None
            return
        self.route = route
        if route.stream_body:
            self.body = None
            request.body = None
            try:
                self.consumer = cast(BodyConsumer, route.handler(request))
            except HttpError as exc:
                self.failure = exc.with_traceback(None)
            except Exception:
                log.exception("%r: handler for %s failed", self, route.pattern)
                self.failure = HttpError(500, "Internal Server Error")
        else:
            self.body = _COLLECT

    def _inspect(self, raw: list[bytes], method: str, keep_alive: bool) -> tuple[str, bool, bool]:
        """The less common heads: framing fields, Expect, Upgrade, HTTP/1.0.

        Returns the version, whether to keep the connection, and whether to send
        ``100 Continue``; raises HttpError for what must be refused.
        """
        length = 0
        chunked = False
        expect = None
        framing = False
        for i in range(0, len(raw), 2):
            name = raw[i]
            if len(name) in _SPECIAL_LENGTHS:
                lower = name.lower()
                value = raw[i + 1]
                if lower == b"content-length":
                    length = int(value)  # llhttp checked it: digits, one value, no TE
                elif lower == b"transfer-encoding":
                    if value.strip().lower() != b"chunked":
                        raise HttpError(501, "unsupported transfer coding", close=True)
                    chunked = True
                elif lower == b"expect":
                    expect = value
                elif lower == b"connection" or lower == b"upgrade":
                    framing = True
        if length > self.limits.max_body:
            raise HttpError(413, "Content Too Large", close=True)
        if keep_alive and not framing and method != "CONNECT":
            version = "1.1"  # as in on_headers_complete
        else:
            version = self.parser.get_http_version()
            if version != "1.1" and version != "1.0":
                raise HttpError(505, f"HTTP/{version} is not supported", close=True)
            if keep_alive and self.parser.should_upgrade():
                keep_alive = False  # we do not switch protocols; the rest is not ours
            if chunked and version == "1.0":
                raise HttpError(400, "Transfer-Encoding in an HTTP/1.0 request", close=True)
        send_continue = False
        if expect is not None:
            if expect.strip().lower() != b"100-continue":
                raise HttpError(417, "Expectation Failed", close=True)
            send_continue = version == "1.1" and bool(length or chunked)
        return version, keep_alive, send_continue

    def _complete_general(self) -> None:
        """on_message_complete of a request that took the general path."""
        self.special = False
        self.phase = IDLE
        self.raw = None  # the trailer fields of a chunked body, if any: ignored
        self.hosts = 0  # (a Host among them too)
        request = self.request
        if request is None:  # pragma: no cover - llhttp always completes a begun head
            return
        self.request = None
        self.requests_left -= 1
        if self.requests_left <= 0:
            request.keep_alive = False
        body = self.body
        if body is not _COLLECT and body:
            request.body = body[0] if len(body) == 1 else b"".join(body)
        self.body = None  # an idle connection keeps no body
        failure = self.failure
        consumer = self.consumer
        route = self.route
        self.failure = None
        self.consumer = None
        result: object
        if failure is not None or route is None:
            result = error_response(failure or HttpError(404, "Not Found"))
        elif consumer is not None:
            try:
                result = consumer.on_end()
            except HttpError as exc:
                result = error_response(exc)
            except Exception:
                log.exception("%r: body consumer for %s failed", self, route.pattern)
                result = error_response(HttpError(500, "Internal Server Error"))
        elif route.blocking:
            slot = _Slot(request)
            self._queue(slot)
            if self.pool_busy:
                # One blocking handler at a time per connection: pipelined requests run
                # in order (RFC 9112 9.3.2: unsafe ones must not run in parallel), and
                # those behind a response that closes the connection never run at all.
                if self.pool_waiting is None:
                    self.pool_waiting = [(slot, route.handler)]
                else:
                    self.pool_waiting.append((slot, route.handler))
            else:
                self._submit(slot, route.handler)
            if not request.keep_alive:
                self.phase = DONE
                raise _StopParsing
            return
        else:
            try:
                result = route.handler(request)
            except HttpError as exc:
                result = error_response(exc)
            except Exception:
                log.exception("%r: handler for %s failed", self, route.pattern)
                result = error_response(HttpError(500, "Internal Server Error"))
        self._respond(request, result)

    def _respond(self, request: Request, result: object) -> None:
        """Queue the response to ``request`` in its turn; stop parsing if it closes."""
        out = self._render(request, result)
        if type(out) is bytes and not self.pending:
            self._send(out)
        else:
            self._queue(out if type(out) is bytes else _Slot(request, out))
            self._advance()
        if not request.keep_alive:
            self._finish_connection()
            raise _StopParsing

    def _queue(self, item: bytes | _Slot | _CloseMarker) -> None:
        """Append to ``pending`` (made on first use)."""
        if self.pending is None:
            self.pending = [item]
        else:
            self.pending.append(item)

    # -- responses -----------------------------------------------------------------------

    def _render(self, request: Request, result: object) -> object:
        """Turn a handler's result into bytes, or a stream/file that starts in its turn."""
        kind = type(result)
        head = request.method == "HEAD"
        if kind is str or kind is bytes:
            field = TEXT_FIELD if kind is str else OCTET_FIELD
            body: bytes = result.encode("utf-8", "surrogateescape") if kind is str else result  # type: ignore[attr-defined,assignment]
            if self.http.access_log:
                self._log(request, 200, len(body))
            return encode_simple(field, body, self._connection_field(request), self.server, head)
        if kind is Response:
            response: Response = result  # type: ignore[assignment]
            if response.close:
                request.keep_alive = False
            if self.http.access_log:
                self._log(request, response.status, len(response.body))
            return response.encode(self._connection_field(request), self.server, head)
        if isinstance(result, StreamingResponse | FileResponse):
            if result.close:
                request.keep_alive = False
            if self.http.access_log:
                self._log(request, result.status, getattr(result, "length", -1))
            return result
        log.error("%r: handler returned %r, not a response", self, kind)
        return self._render(request, error_response(HttpError(500, "Internal Server Error")))

    def _connection_field(self, request: Request) -> bytes:
        if request.keep_alive:
            return b"" if request.version == "1.1" else KEEP_ALIVE_FIELD
        return CLOSE_FIELD

    def _log(self, request: Request, status: int, size: int) -> None:
        access_log.info(
            '%s "%s %s HTTP/%s" %d %s',
            request.peer,
            request.method,
            request.target,
            request.version,
            status,
            size if size >= 0 else "-",
        )

    def _emit(self, data: bytes) -> None:
        """Send ``data`` after every response queued before it."""
        if self.pending:
            self.pending.append(data)
        else:
            self._send(data)

    def _submit(self, slot: _Slot, handler: Callable[[Request], object]) -> None:
        self.pool_busy = True
        self.loop.run_in_pool(
            handler, slot.request, on_done=functools.partial(self._pool_done, slot)
        )

    def _pool_done(self, slot: _Slot, future: Future[object]) -> None:
        """A blocking handler finished (loop thread): fill its slot, start the next
        waiting one, and send what is due."""
        self.pool_busy = False
        request = slot.request
        try:
            result = future.result()
        except HttpError as exc:
            result = error_response(exc)
        except Exception as exc:
            log.error("%r: blocking handler failed", self, exc_info=exc)
            result = error_response(HttpError(500, "Internal Server Error"))
        if self.conn.closed or self.phase == LINGER:  # gone, or dropped behind a close
            if isinstance(result, FileResponse):
                result.release()
            elif isinstance(result, StreamingResponse):
                result.cancel()
            return
        slot.result = self._render(request, result)
        if not request.keep_alive:
            self._close_after(slot)
            self.pool_waiting = None  # after the close: never run, never answered
        elif self.pool_waiting:
            following, handler = self.pool_waiting.pop(0)
            if not self.pool_waiting:
                self.pool_waiting = None
            self._submit(following, handler)
        self._advance()

    def _close_after(self, slot: _Slot) -> None:
        """Close the connection once ``slot``'s response is out; later ones are dropped."""
        pending = self.pending
        assert pending is not None  # slot is in it
        pending.insert(pending.index(slot) + 1, _CLOSE)
        if self.phase < DONE:
            self.phase = DONE

    def _advance(self) -> None:
        """Send every response that is due, in order, until one is not ready yet."""
        if self.advancing:
            return  # called back from a response that finished while being started
        self.advancing = True
        try:
            pending = self.pending
            send = self._send
            while pending:
                head = pending[0]
                if type(head) is bytes:
                    del pending[0]
                    send(head)
                    continue
                if head is _CLOSE:
                    self._drop_pending()
                    self._linger()
                    return
                assert isinstance(head, _Slot)
                result = head.result
                if result is None or head is self.active:
                    break  # still computing, or still streaming
                if type(result) is bytes:
                    del pending[0]
                    send(result)
                    continue
                self.active = head
                self._start(head)
                if self.active is head:
                    break
        finally:
            self.advancing = False
        if not self.pending:
            self.pending = None
        elif len(self.pending) >= self.limits.max_pending_responses:
            return
        if self.paused:
            self.loop.call_soon(self._resume)

    def _start(self, slot: _Slot) -> None:
        """Begin a streamed or file response that has reached the front of the queue."""
        request = slot.request
        result = slot.result
        head = request.method == "HEAD"
        done = functools.partial(self._active_done, slot)
        if isinstance(result, FileResponse):
            self._send(result.encode_head(self._connection_field(request), self.server))
            if head or result.length == 0:
                result.release()
                done()
                return
            self.sender = FileSender(
                self.conn,
                result.fd,
                result.offset,
                result.length,
                functools.partial(self._file_done, slot, result),
            )
            self.sender.start()
            return
        assert isinstance(result, StreamingResponse)
        chunked = request.version == "1.1"
        if not chunked and request.keep_alive:
            # HTTP/1.0 has no chunked coding: the end of the body is the end of the connection.
            request.keep_alive = False
            self._close_after(slot)
        self._send(
            encode_head(
                result.status,
                result.fields,
                CHUNKED_FIELD if chunked else b"",
                self._connection_field(request),
                self.server,
            )
        )
        result.bind(self.loop, self._send, done, chunked=chunked, head_only=head)

    def _file_done(self, slot: _Slot, response: FileResponse, ok: bool) -> None:
        response.release()
        self.sender = None
        if ok:
            self._active_done(slot)
        else:
            self.conn.force_close()  # the promised Content-Length cannot be met

    def _active_done(self, slot: _Slot) -> None:
        if self.active is slot:
            self.active = None
            if self.pending and self.pending[0] is slot:
                del self.pending[0]
            self._advance()

    def _drop_pending(self) -> None:
        for item in self.pending or ():
            if isinstance(item, _Slot):
                if isinstance(item.result, FileResponse):
                    item.result.release()
                elif isinstance(item.result, StreamingResponse):
                    item.result.cancel()
        self.pending = None

    # -- closing -------------------------------------------------------------------------

    def _fail(self, err: HttpError) -> None:
        """A protocol error: answer it after the earlier responses, then close."""
        if self.phase >= DONE:
            return
        self.phase = DONE
        self.request = None
        self.consumer = None
        self.body = None
        if self.http.access_log:
            access_log.info("%s error %d %s", self.conn.peer, err.status, err.detail)
        self._emit(error_response(err).encode(CLOSE_FIELD, self.server))
        self._finish_connection()

    def _finish_connection(self) -> None:
        """No more requests: close once the queued responses are out."""
        if self.phase < DONE:
            self.phase = DONE
        if self.pending:
            if _CLOSE not in self.pending:
                self.pending.append(_CLOSE)
        else:
            self._linger()

    def _linger(self) -> None:
        """Send FIN after the output drains; discard input until the peer closes."""
        self.phase = LINGER
        self.since = self.loop.now
        self._flush_batch()
        self.conn.shutdown()

    def on_eof(self) -> bool:
        """The peer half-closed. Keep writing if responses are still on their way, and
        parse first what was held while parsing paused (pipelined requests, then FIN)."""
        if self.phase == LINGER:
            return False
        if self.paused and len(self.conn.input) and self.phase < DONE:
            self.eof_held = True
            return True
        if self.pending:
            self._finish_connection()
            return True
        return False

    def _finish_after_held_input(self) -> None:
        """The held input of a half-closed peer is parsed: finish the connection."""
        if self.eof_held and not self.paused and not len(self.conn.input):
            self.eof_held = False
            self._finish_connection()

    def shutdown(self) -> None:
        """Graceful server shutdown: finish the request in flight, then close."""
        self.requests_left = 0  # the request in flight is answered with Connection: close
        if self.phase == IDLE:
            if self.pending:
                last = self.pending[-1]
                if isinstance(last, _Slot) and last.result is None:
                    last.request.keep_alive = False  # still computing: it can say so
                self._finish_connection()
            else:
                self.phase = DONE
                self.conn.close()

    def on_close(self) -> None:
        """The connection is gone: stop streams and files, release what is held."""
        self.phase = LINGER
        if self.sender is not None:
            self.sender.cancel()
            self.sender = None
        active = self.active
        if active is not None and isinstance(active.result, FileResponse):
            active.result.release()
        self.active = None
        self._drop_pending()
        if active is not None and isinstance(active.result, StreamingResponse):
            active.result.cancel()

    # -- timeouts (called by the loop's sweep) -------------------------------------------

    def check_timeouts(self, now: float) -> None:
        """Apply the header, body, idle, linger and write deadlines at time ``now``."""
        limits = self.limits
        conn = self.conn
        phase = self.phase
        if phase == IDLE:
            if not self.pending and self.active is None:
                served = self.requests_left < limits.max_requests_per_connection
                timeout = limits.keepalive_timeout if served else limits.header_timeout
                # Not last_read: bytes that start no request (empty lines, which llhttp
                # skips) must not keep an idle connection open. A served request's
                # response moves last_write; ``since`` is the connection's start.
                if now - max(self.since, conn.last_write) > timeout:
                    self.phase = DONE
                    conn.close()
                    return
        # While parsing is paused the wait is the server's (responses or output still
        # draining), not the client's: no head or body deadline runs (see _unpause).
        elif phase == HEADERS:
            if not self.paused and now - self.since > limits.header_timeout:
                self._fail(HttpError(408, "Request Timeout", close=True))
        elif phase == BODY:
            if not self.paused and now - max(self.since, conn.last_read) > limits.body_timeout:
                self._fail(HttpError(408, "Request Timeout", close=True))
        elif (
            phase == LINGER
            and not conn.output_size
            and now - max(self.since, conn.last_write) > limits.linger_timeout
        ):
            # Only once the last response has gone out: until then a slow reader is
            # still being served (the write timeout drops one that stops reading).
            conn.force_close()
            return
        if conn.output_size or self.sender is not None:
            if self.stall_mark != conn.last_write:
                self.stall_mark = conn.last_write
                self.stall_since = now
            elif now - self.stall_since > limits.write_timeout:
                log.debug(
                    "%r: peer took no output for %.1f s; dropping", self, now - self.stall_since
                )
                conn.force_close()
        else:
            self.stall_mark = -1.0


class ParserCallbacks:
    """The httptools callbacks of every connection a loop serves.

    httptools keeps the callbacks its protocol object has when the parser is made: with
    the connection's own methods, five bound method objects per connection, and a
    reference cycle through the parser. One set per loop serves every parser (312
    bytes fewer per idle connection): ``protocol`` is the connection whose input is being
    parsed, set around each ``feed_data`` (in :func:`receive_read`; restored
    after, so even a nested feed would find its own).

    Four calls per request, each as short as it can be: on_url, on_header (per field),
    on_headers_complete and on_message_complete (no on_message_begin: a request begins
    with its first on_url). A plain request -- GET and friends over keep-alive HTTP/1.1,
    none of the fields the protocol must act on, a route that runs on the loop -- takes
    the short path; every other one takes the general path, which checks everything.
    """

    __slots__ = (
        "on_body",
        "on_header",
        "on_headers_complete",
        "on_message_complete",
        "on_url",
        "protocol",
    )

    def __init__(self) -> None:
        #: Only read while a feed runs, which sets it first.
        self.protocol: HttpProtocol = cast("HttpProtocol", None)
        # Bound once: httptools takes ``getattr(callbacks, name)``, which for a method
        # would make a new bound method for every parser.
        self.on_url = self.url
        self.on_header = self.header
        self.on_headers_complete = self.headers_complete
        self.on_body = self.body
        self.on_message_complete = self.message_complete

    def url(self, url: bytes) -> None:
        p = self.protocol
        if p.url:  # the rest of a target split across reads
            url = p.url + url
        if len(url) > p.limits.max_request_line:
            raise HttpError(414, "URI Too Long", close=True)
        p.url = url

    def header(self, name: bytes, value: bytes) -> None:
        p = self.protocol
        raw = p.raw
        if raw is None:  # the head's first field (within any limit: max_headers >= 1)
            p.raw = [name, value]
        else:
            raw.append(name)
            raw.append(value)
            if len(raw) > p.http.max_raw_fields:
                raise HttpError(431, "Request Header Fields Too Large", close=True)
        n = len(name)
        if n == 4 and (name == b"Host" or name.lower() == b"host"):
            p.hosts += 1  # each HTTP/1.1 request needs exactly one (RFC 9112 3.2)
        elif n in _SPECIAL_LENGTHS and name.lower() in _SPECIAL_FIELDS:
            p.careful = True  # the general path reads the fields

    def headers_complete(self) -> None:
        p = self.protocol
        parser = p.parser
        raw = p.raw or _NO_FIELDS
        p.raw = None
        url = p.url
        p.url = b""
        plain = p.routes.get(parser.get_method())
        if plain is None or p.careful or p.hosts != 1 or not parser.should_keep_alive():
            p.phase = BODY
            p.body_fed = 0
            p._general_route(p._general_head(raw, url))
            return
        p.hosts = 0
        # The short path. Keep-alive without a Connection field: HTTP/1.1. Neither
        # Content-Length nor Transfer-Encoding: no body, so the request is complete now
        # and is answered here (on_message_complete follows at once). The head lay within
        # one read no larger than the header limit, so it is within that limit too.
        method, targets, paths = plain
        hit = targets.get(url)
        if hit is not None:
            # The target is a route's path (no query, nothing escaped): the route's own
            # string serves as target and path. incoming(), inlined:
            route, target = hit
            request = new_request(Request)
            request.method = method
            request.target = target
            request.path = target
            request.query = ""
            request.version = "1.1"
            request._headers = raw
            request.body = b""
            request.peer = p.conn.peer
            request.params = NO_PARAMS
            request.keep_alive = True
        else:
            target = url.decode("latin-1")
            path, query = split_target(target)
            request = incoming(method, target, path, query, raw, p.conn.peer)
            found = paths.get(path)
            if found is None:
                p.phase = BODY
                p.body_fed = 0
                p.request = request
                p._general_route(request)
                return
            route = found
        left = p.requests_left - 1
        p.requests_left = left
        if left <= 0:
            request.keep_alive = False
        try:
            result = route.handler(request)
        except HttpError as exc:
            result = error_response(exc)
        except Exception:
            log.exception("%r: handler for %s failed", p, route.pattern)
            result = error_response(HttpError(500, "Internal Server Error"))
        if type(result) is str and request.keep_alive and not p.pending:
            # The common case: text answered on the loop with nothing queued ahead, the
            # whole response built once per second and text (HttpHandler.text_response).
            http = p.http
            p.batch.append(  # type: ignore[union-attr]  # always a list while parsing
                http.text_cache.get(result) or http.text_response(result)
            )
        elif type(result) is bytes and request.keep_alive and not p.pending:
            p.batch.append(p.http.octet_response(result))  # type: ignore[union-attr]
        else:
            p._respond(request, result)

    def body(self, chunk: bytes) -> None:
        p = self.protocol
        # Only general-path requests have a body: Content-Length or Transfer-Encoding
        # sends a head there.
        size = p.body_size + len(chunk)
        if size > p.limits.max_body:
            raise HttpError(413, "Content Too Large", close=True)
        p.body_size = size
        body = p.body
        if body is _COLLECT:
            p.body = [chunk]
        elif body is not None:
            body.append(chunk)
        elif p.consumer is not None:
            try:
                p.consumer.on_data(chunk)
            except HttpError as exc:
                p.failure = exc.with_traceback(None)
                p.consumer = None
            except Exception:
                log.exception("%r: body consumer failed", p)
                p.failure = HttpError(500, "Internal Server Error")
                p.consumer = None

    def message_complete(self) -> None:
        p = self.protocol
        if p.special:  # a request on the short path was answered by its head (IDLE)
            p._complete_general()


#: Each loop's callbacks (a loop parses one input at a time, on its own thread).
_LOOP_CALLBACKS: weakref.WeakKeyDictionary[EventLoop, ParserCallbacks] = weakref.WeakKeyDictionary()


def loop_callbacks(loop: EventLoop) -> ParserCallbacks:
    """The :class:`ParserCallbacks` of ``loop`` (call on its thread)."""
    callbacks = _LOOP_CALLBACKS.get(loop)
    if callbacks is None:
        callbacks = _LOOP_CALLBACKS[loop] = ParserCallbacks()
    return callbacks


def receive(http: HttpHandler, conn: TcpConnection, buffer: Buffer) -> None:
    """``HttpHandler.on_message``: parse what ``conn.input`` holds (input kept from an
    earlier read, held while paused, or too large for one parse)."""
    protocol: HttpProtocol = conn.context
    if protocol.phase >= DONE or protocol.paused:
        protocol._feed_held(buffer)
        return
    if len(buffer) > FEED_SLICE:
        protocol._feed_large(buffer)
        return
    with buffer.peek() as data:
        receive_read(http, conn, data)
    buffer.retrieve_all()


def receive_read(http: HttpHandler, conn: TcpConnection, data: memoryview) -> int:
    """``HttpHandler.on_read``: parse a read straight from the loop's read buffer; the
    responses it produces leave in one ``conn.send``.

    A function of the handler rather than a method of the protocol, so a read costs one
    Python call before the parser; the state is the connection's :class:`HttpProtocol`.
    Returns 0 (the connection keeps the read in ``conn.input`` for :func:`receive`)
    when parsing waits for output to drain or the read needs slicing.
    """
    protocol: HttpProtocol = conn.context
    phase = protocol.phase
    n = len(data)
    if phase >= DONE:
        return n  # nothing more is parsed: discarded
    if protocol.paused or n > FEED_SLICE:
        return 0
    batch: list[bytes] = []
    protocol.batch = batch
    # Heads must be measured if one began in an earlier read or this read is large.
    protocol.careful = phase == HEADERS or n > http.small_read
    callbacks = protocol.callbacks
    previous = callbacks.protocol
    callbacks.protocol = protocol
    try:
        protocol.parser.feed_data(data)
    except httptools.HttpParserError as exc:
        protocol._parser_failed(exc)
    except httptools.HttpParserUpgrade:
        pass  # the upgrade request was answered with Connection: close
    finally:
        callbacks.protocol = previous
    if protocol.url and protocol.phase <= HEADERS:
        protocol._bound_head(n)
    elif protocol.phase == BODY:
        protocol._bound_body(n)
    protocol.batch = None
    if batch:
        conn.send(batch[0] if len(batch) == 1 else b"".join(batch))
    if protocol.pending and len(protocol.pending) >= http.limits.max_pending_responses:
        protocol.paused = True
    return n
