"""One HTTP request run through an ASGI application: its ``receive`` and ``send``.

Data flow::

    parser events --AsgiDispatcher--> HttpCycle: the body chunks, the end, the client gone
    app: await receive() <-- http.request {body, more_body} / http.disconnect
    app: await send(http.response.start / body / trailers)
        --> a whole response: encoded once --> ResponseQueue.fill_rendered (in order)
        --> a streamed one: AsgiStream in the queue (its turn: head, then pieces,
            chunked when no length is given) --> conn.send --> one send per iteration

Each request has a place in the connection's response queue from the moment its head is
parsed (``reserve``), so pipelined requests are answered in order whatever order their
applications finish in. The head is not sent at ``http.response.start``: a response
whose body comes in one message (the common case) leaves as one piece of bytes with its
``Content-Length``, built once.

Back-pressure both ways. Reading: body chunks the application has not taken yet are
held up to ``BODY_BUFFER`` bytes, then the connection stops reading until ``receive()``
takes them. Writing: ``send()`` of a body piece waits while the connection's queued
output is above its high water mark (or, before the response's turn, while the pieces
it holds are), and wakes when the output drains or the client is gone: then ``send()``
raises :class:`ClientDisconnected` (an ``OSError``, ASGI 2.4) and never hangs
(uvicorn#2754). ``receive()`` after the client left, or once the response is complete,
returns ``http.disconnect``.

Failures, logged once with the request line: an exception (or a return) before the
response started is answered ``500``; after it started the connection is closed once
what was sent has gone out (the client sees a truncated response).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, MutableMapping
from typing import TYPE_CHECKING, Any, Final

from ioreactor.http.asgi.fields import ResponseFields, encode_fields, encode_trailers
from ioreactor.http.date import DATE
from ioreactor.http.head import (
    connection_field,
    encode_head,
    framing_field,
    has_body,
    status_line,
)
from ioreactor.http.response import CHUNK_END, CONTINUE, StreamingResponse

if TYPE_CHECKING:
    from collections.abc import Callable

    from ioreactor.http.asgi.dispatcher import AsgiConnection
    from ioreactor.http.protocol import HttpProtocol
    from ioreactor.http.request import Request
    from ioreactor.http.response_queue import Slot
    from ioreactor.loop.event_loop import EventLoop

log = logging.getLogger("ioreactor.asgi")

#: Request body bytes held for an application that has not asked for them yet; past
#: this the connection stops reading until ``receive()`` takes them.
BODY_BUFFER = 64 * 1024

# The response's progress.
START: Final = 0  # nothing sent
HEAD: Final = 1  # http.response.start received, nothing on the wire yet
BODY: Final = 2  # streaming: the head is queued, pieces follow
TRAILERS: Final = 3  # the body is complete, trailers are awaited
DONE: Final = 4  # complete (or abandoned)

DISCONNECT: Final = {"type": "http.disconnect"}
_INTERNAL_ERROR = (
    b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: text/plain; charset=utf-8\r\n"
    b"Content-Length: 22\r\nConnection: close\r\n"
)


class ClientDisconnected(OSError):
    """``send()`` on a connection the client has closed (ASGI 2.4's OSError)."""


class Waking:
    """The wake-up an ASGI cycle's ``receive()`` or back-pressured ``send()`` waits for:
    one future at a time, on the connection's asyncio loop, set by :meth:`wake`."""

    __slots__ = ("waiter",)

    connection: AsgiConnection
    #: What receive() or a back-pressured send() waits on (None: nothing waits).
    waiter: asyncio.Future[None] | None

    def wake(self) -> None:
        """Whatever waits (receive(), a congested send()) looks again."""
        waiter = self.waiter
        if waiter is not None:
            self.waiter = None
            if not waiter.done():
                waiter.set_result(None)

    async def _wait(self) -> None:
        waiter = self.waiter = self.connection.loop.create_future()
        try:
            await waiter
        finally:
            if self.waiter is waiter:
                self.waiter = None


class HttpCycle(Waking):
    """The ASGI side of one request (module docstring). ``receive`` and ``send`` are
    the callables the application gets."""

    __slots__ = (
        "chunks",
        "connection",
        "continue_owed",
        "disconnected",
        "eof",
        "fields",
        "last_body_given",
        "more_body",
        "paused",
        "protocol",
        "request",
        "size",
        "slot",
        "state",
        "status",
        "stream",
        "task",
        "trailer_lines",
        "trailers",
    )

    def __init__(
        self, connection: AsgiConnection, protocol: HttpProtocol, request: Request, slot: Slot
    ) -> None:
        self.connection = connection
        self.protocol = protocol
        self.request = request
        self.slot = slot
        self.state = START
        #: Body chunks not taken by the application yet, and their size.
        self.chunks: list[bytes] | None = None
        self.size = 0
        #: More body is to come from the client.
        self.more_body = request.body is None
        #: The message with ``more_body: False`` was given to the application.
        self.last_body_given = False
        self.paused = False
        self.disconnected = False
        #: The client half-closed: it will send nothing more (receive() says
        #: http.disconnect once the body is taken; the response may still go out).
        self.eof = False
        #: The client waits for ``100 Continue``: sent on the first receive().
        self.continue_owed = False
        self.waiter = None
        self.status = 200
        self.fields: ResponseFields | None = None
        self.trailers = False
        self.trailer_lines = b""
        self.stream: AsgiStream | None = None
        #: The Task running the application for this request.
        self.task: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        request = self.request
        return f"<HttpCycle {request.method} {request.target} state={self.state}>"

    def request_line(self) -> str:
        request = self.request
        return f'"{request.method} {request.target} HTTP/{request.version}" from {request.peer}'

    # -- the client's side (the dispatcher calls these) ------------------------------------

    def body_received(self, chunk: bytes) -> None:
        if self.state == DONE:
            return  # answered already: the rest of the body is read and dropped
        if self.chunks is None:
            self.chunks = [chunk]
        else:
            self.chunks.append(chunk)
        self.size += len(chunk)
        if self.size > BODY_BUFFER and not self.paused:
            self.paused = True
            self.protocol.conn.pause_reading()
        self.wake()

    def body_ended(self) -> None:
        self.more_body = False
        self.wake()

    def abandon(self) -> None:
        """The request's body broke off (the connection answers the error and closes):
        the application gets http.disconnect, and its response is not sent."""
        self.disconnected = True
        if self.state < BODY:
            self.state = DONE
            self.protocol.queue.fill_rendered(self.slot, b"", 0, 0)
        elif self.stream is not None and self.state == BODY:
            self.state = DONE
            self.stream.abort()
        self.wake()

    def peer_eof(self) -> None:
        self.eof = True
        self.wake()

    def client_gone(self) -> None:
        self.disconnected = True
        if self.stream is not None:
            self.stream.cancel()
        self.wake()

    # -- receive --------------------------------------------------------------------------

    async def receive(self) -> dict[str, Any]:
        if self.continue_owed:
            self._send_continue()
        while True:
            if self.disconnected or self.state == DONE:
                return DISCONNECT
            if self.eof and self.last_body_given and not self.chunks:
                return DISCONNECT  # (as uvicorn: a FIN is the client going away)
            chunks = self.chunks
            if chunks:
                self.chunks = None
                self.size = 0
                if self.paused:
                    self.paused = False
                    self.protocol.conn.resume_reading()
                body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
                more = self.more_body
                self.last_body_given = not more
                return {"type": "http.request", "body": body, "more_body": more}
            if not self.more_body and not self.last_body_given:
                self.last_body_given = True
                return {"type": "http.request", "body": b"", "more_body": False}
            await self._wait()

    def _send_continue(self) -> None:
        """``100 Continue`` on the first read of the body, if the client still waits
        for it: only while this response is the next to go out (before it, earlier
        responses are on their way; the client sends the body after its own wait)."""
        self.continue_owed = False
        protocol = self.protocol
        if self.state == START and self.more_body and protocol.queue.at_front(self.slot):
            protocol.send_batch()  # (what this read answered goes first)
            protocol.conn.send(CONTINUE)

    # -- send -----------------------------------------------------------------------------

    def send(self, message: MutableMapping[str, Any]) -> Awaitable[None]:
        """The application's ``send``: an awaitable that is done at once unless the
        output is congested (then the wait for the drain); an error raises here.

        Not an ``async def``: a message that needs no wait (all of them but a congested
        body piece) costs no coroutine object, and its awaitable is the connection's
        completed Future."""
        kind = message["type"]
        if kind == "http.response.body":
            state = self.state
            if state == HEAD:
                body = message.get("body", b"")
                if not message.get("more_body", False) and not self.trailers:
                    self._respond(body)
                    return self.connection.done
                if not has_body(self.status):
                    return self.connection.done  # (1xx, 204, 304: no body)
                self._start_stream()
                state = BODY
            if state == BODY:
                if self.disconnected:
                    raise ClientDisconnected(f"the client of {self.request_line()} is gone")
                stream = self.stream
                assert stream is not None
                stream.write(message.get("body", b""))
                if not message.get("more_body", False):
                    if self.trailers:
                        self.state = TRAILERS
                    else:
                        self._finish_stream()
                    return self.connection.done
                if stream.congested():
                    return self._drain(stream)
                return self.connection.done
            if self.disconnected:
                raise ClientDisconnected(f"the client of {self.request_line()} is gone")
            raise RuntimeError(f"{kind} in the wrong place (response state {state})")
        if kind == "http.response.start":
            if self.disconnected:
                raise ClientDisconnected(f"the client of {self.request_line()} is gone")
            if self.state != START:
                raise RuntimeError("http.response.start sent twice")
            status = message["status"]
            if type(status) is not int:
                raise RuntimeError(f"status {status!r} is not an int")
            status_line(status)  # (ValueError for one out of range)
            self.fields = encode_fields(message.get("headers", ()))
            self.status = status
            self.trailers = bool(message.get("trailers", False))
            self.state = HEAD
            return self.connection.done
        if kind == "http.response.trailers":
            if self.state != TRAILERS and not (self.state == BODY and self.trailers):
                raise RuntimeError("http.response.trailers without trailers announced")
            self.trailer_lines += encode_trailers(message.get("headers", ()))
            if not message.get("more_trailers", False):
                self.state = BODY
                self._finish_stream()
            return self.connection.done
        raise RuntimeError(f"unknown ASGI message type {kind!r} for an HTTP request")

    async def _drain(self, stream: AsgiStream) -> None:
        """Wait while the response's output is above the high water mark; raise
        ClientDisconnected if the client leaves meanwhile."""
        self.connection.drain_waiters.append(self)
        try:
            while stream.congested() and not self.disconnected:
                await self._wait()
        finally:
            waiters = self.connection.drain_waiters
            if self in waiters:
                waiters.remove(self)
        if self.disconnected:
            raise ClientDisconnected(f"the client of {self.request_line()} is gone")

    # -- the response -----------------------------------------------------------------------

    def head(self, framing: bytes) -> bytes:
        """Status line, Server and Date unless the application gave them, its fields,
        ``framing`` and the Connection field (none when its own says close)."""
        fields = self.fields
        assert fields is not None
        request = self.request
        if fields.close:
            request.keep_alive = False
        if self.continue_owed and self.more_body:
            # The client still waits for 100 Continue and may never send the body.
            request.keep_alive = False
        return encode_head(
            status_line(self.status),
            b"" if fields.has_server else self.protocol.cache.server,
            b"" if fields.has_date else DATE.line,
            fields.lines,
            framing,
            b"" if fields.close else connection_field(request),
        )

    def _respond(self, body: bytes) -> None:
        """The whole response at once (one message of body, no trailers)."""
        fields = self.fields
        assert fields is not None
        status = self.status
        head_request = self.request.method == "HEAD"
        # The application's own Content-Length is among its fields: none is added.
        framing = framing_field(status, len(body) if fields.length < 0 else -1, fields.chunked)
        if not has_body(status):
            body = b""
        elif fields.chunked:
            if not head_request:
                body = (b"%x\r\n%s\r\n%s" % (len(body), body, CHUNK_END)) if body else CHUNK_END
        elif fields.length >= 0 and fields.length != len(body) and not (head_request and not body):
            raise RuntimeError(f"Content-Length {fields.length} but a body of {len(body)} bytes")
        self.state = DONE
        data = self.head(framing)
        if body and not head_request:
            data += body
        self.protocol.queue.fill_rendered(self.slot, data, status, len(body))
        self.wake()

    def _start_stream(self) -> None:
        fields = self.fields
        assert fields is not None
        chunked = fields.chunked or fields.length < 0  # (trailers travel only chunked)
        self.stream = AsgiStream(self, self.status, fields.length, chunked=chunked)
        self.state = BODY
        self.protocol.queue.fill(self.slot, self.stream)

    def _finish_stream(self) -> None:
        stream = self.stream
        assert stream is not None
        self.state = DONE
        trailers = self.trailer_lines if _accepts_trailers(self.request) else b""
        stream.finish(trailers)
        self.wake()

    def finished(self, error: BaseException | None) -> None:
        """The application returned (``error`` None) or raised: complete what it left."""
        state = self.state
        if state == DONE:
            if error is not None and not isinstance(error, ClientDisconnected):
                log.error(
                    "ASGI application failed after its response to %s",
                    self.request_line(),
                    exc_info=error,
                )
            return
        if error is None:
            log.error(
                "ASGI application returned without completing its response to %s",
                self.request_line(),
            )
        elif self.disconnected and isinstance(error, OSError | asyncio.CancelledError):
            log.debug("%s: the client left: %r", self.request_line(), error)
        else:
            log.error("Exception in ASGI application for %s", self.request_line(), exc_info=error)
        if state <= HEAD:
            self.state = DONE
            self.request.keep_alive = False
            data = (
                _INTERNAL_ERROR
                + self.protocol.cache.server
                + DATE.line
                + b"\r\nInternal Server Error\n"
            )
            self.protocol.queue.fill_rendered(self.slot, data, 500, 22)
        else:
            self.state = DONE
            stream = self.stream
            assert stream is not None
            stream.abort()
        self.wake()


def _accepts_trailers(request: Request) -> bool:
    """The client said it accepts trailer fields (``TE: trailers``, RFC 9110 10.1.4)."""
    if request.version != "1.1":
        return False
    for name, value in request.header_pairs():
        if name.lower() == b"te" and b"trailers" in value.lower():
            return True
    return False


class AsgiStream(StreamingResponse):
    """A response whose body the application sends in pieces, in the connection's
    response queue: pieces sent before its turn are held (``congested`` counts them),
    then go out with the head; chunked unless the application gave a Content-Length.
    Loop thread only (the application's ``send`` runs there)."""

    def __init__(self, cycle: HttpCycle, status: int, length: int, *, chunked: bool) -> None:
        super().__init__(status)
        self.cycle = cycle
        self.length = length
        self.chunked_body = chunked
        self.held: list[bytes] = []
        self.held_size = 0
        self.sent = 0
        self.out: Callable[[bytes], None] | None = None
        self.on_done: Callable[[], None] | None = None
        self.head_only = False
        self.ending: bytes | None = None
        self.aborted = False

    def encode_head(self, connection: bytes, server: bytes, *, chunked: bool) -> bytes:
        """The head (the queue's call when the response's turn comes). A body without a
        length on HTTP/1.0 is ended by the connection's close (``chunked`` False)."""
        self.chunked_body = self.chunked_body and chunked
        # Not chunked: the application's own Content-Length is among its fields, or the
        # close ends the body.
        return self.cycle.head(framing_field(self.status, -1, self.chunked_body))

    def bind(
        self,
        loop: EventLoop,
        out: Callable[[bytes], None],
        done: Callable[[], None],
        *,
        chunked: bool,
        head_only: bool,
    ) -> None:
        """The response's turn: what was held goes out, the rest as it comes."""
        self.out = out
        self.on_done = done
        self.head_only = head_only
        held, self.held = self.held, []
        self.held_size = 0
        for data in held:
            self._put(data)
        if self.aborted:
            self.cycle.protocol.send_batch()
            self.cycle.protocol.conn.close()
        elif self.ending is not None:
            self._end(self.ending)
        self.cycle.connection.wake_drained()

    def write(self, data: bytes | str) -> None:
        if isinstance(data, str):
            data = data.encode("utf-8")
        elif not isinstance(data, bytes):
            data = bytes(data)  # (bytearray, memoryview)
        if not data or self.cancelled:
            return
        if self.length >= 0:
            self.sent += len(data)
            if self.sent > self.length:
                raise RuntimeError(f"response body longer than its Content-Length {self.length}")
        if self.out is None:
            self.held.append(data)
            self.held_size += len(data)
        else:
            self._put(data)

    def _put(self, data: bytes) -> None:
        """A piece on its way: to the connection itself, not into the batch of the read
        being handled (an application answering inside that read would otherwise pile
        its whole body there, unseen by ``congested``)."""
        if self.head_only or self.out is None:
            return
        protocol = self.cycle.protocol
        protocol.send_batch()  # what is due before this piece (its head, at least)
        if self.chunked_body:
            protocol.conn.send(b"%x\r\n%s\r\n" % (len(data), data))
        else:
            protocol.conn.send(data)

    def congested(self) -> bool:
        """More is queued than the connection's high water mark allows."""
        conn = self.cycle.protocol.conn
        if self.out is None:
            return self.held_size > conn.high_water_mark
        return conn.output_size > conn.high_water_mark and not conn.closed

    def finish(self, trailers: bytes = b"") -> None:
        """The body is complete (with its trailer field lines, when chunked)."""
        if self.length >= 0 and self.sent < self.length and not self.head_only:
            self.abort()
            raise RuntimeError(
                f"response body of {self.sent} bytes, shorter than its Content-Length {self.length}"
            )
        if self.out is None:
            self.ending = trailers
        else:
            self._end(trailers)

    def end(self) -> None:
        self.finish()

    def _end(self, trailers: bytes) -> None:
        out, done = self.out, self.on_done
        self.on_done = None
        if out is None or done is None or self.cancelled:
            return
        if self.chunked_body and not self.head_only:
            out(b"0\r\n%s\r\n" % trailers if trailers else CHUNK_END)
        done()

    def abort(self) -> None:
        """The application failed mid-body: close the connection once what was sent
        has gone out (now, or when the response's turn comes)."""
        self.aborted = True
        if self.out is not None and not self.cancelled:
            protocol = self.cycle.protocol
            protocol.send_batch()
            protocol.conn.close()

    def cancel(self) -> None:
        self.cancelled = True
        self.held = []
        self.held_size = 0

    @property
    def ended(self) -> bool:
        return self.ending is not None or (self.out is not None and self.on_done is None)
