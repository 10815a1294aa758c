"""One HTTP/1.1 connection: its lifecycle as a state machine, its deadlines, and the step
from a read to the responses it produces.

Data flow::

    a read (in place) --receive_read--> RequestParser.feed --> events
        --> Dispatcher (after feed_data returned) --> ResponseQueue --> one conn.send
    conn.input (kept, held or large) --receive--> the same, a slice at a time

One :class:`HttpProtocol` per connection (in ``conn.context``) owns the connection's
:class:`~ioreactor.http.parser.RequestParser` and
:class:`~ioreactor.http.response_queue.ResponseQueue` and drives them; the
:class:`~ioreactor.http.dispatch.Dispatcher` (the application side, one per server) and
the :class:`~ioreactor.http.response.ResponseCache` are given to it. An ASGI or WSGI server
reuses all of this with another dispatcher; :meth:`HttpProtocol.hand_over` gives the
connection to another protocol after a response (a WebSocket after ``101``).

The connection's life, as ``phase`` (h11 keeps its connection as such a table too)::

    phase    what the connection is doing          on                               -> phase
    -------  ------------------------------------  -------------------------------  --------
    IDLE     between requests (a plain request     a read ends inside a head        HEADERS
             goes from IDLE to IDLE in its read)   a head with a body               BODY
                                                   header or keep-alive timeout     closed
    HEADERS  a head spans reads                    the head completes               IDLE/BODY
                                                   header_timeout                   DONE, 408
    BODY     a request body is arriving            the body ends                    IDLE
                                                   body_timeout                     DONE, 408
    any of   -                                     an error, a request or response  DONE
    these                                          that closes, the last request,
                                                   shutdown, hand_over
    DONE     no more input is parsed; the          the queue reaches its CLOSE      LINGER
             responses before the end go out       the queue reaches a hand-over    (handed)
    LINGER   FIN sent once output drained; input   the peer closes                  closed
             is read and discarded                 linger_timeout, output gone      closed

While ``paused`` (too many responses waiting, or output above the high water mark)
parsing stops: input is held in ``conn.input`` and no head or body deadline runs (the
wait is the server's); ``write_timeout`` drops a peer that takes no output, in any phase.

Every protocol error or broken limit answers with its status and ``Connection: close``
after the responses before it, then the connection lingers and closes: a plain close
right after an error response would reset the connection if the peer's unread request
bytes are still in our receive buffer, and the reset can destroy the response before the
client reads it (Apache's and nginx's "lingering close"). Timeouts are not timers: one
sweep per loop calls :meth:`HttpProtocol.check_timeouts` every ``Limits.sweep_interval``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ioreactor.http import parser as parsing
from ioreactor.http.dispatch import LATER
from ioreactor.http.errors import HttpError
from ioreactor.http.parser import CONTINUE, FEED_SLICE, End, Event, RequestParser
from ioreactor.http.request import HTTP_11, Request
from ioreactor.http.response_queue import ResponseQueue

if TYPE_CHECKING:
    from ioreactor.http.dispatch import Dispatcher
    from ioreactor.http.limits import Limits
    from ioreactor.http.observers import ResponseObserver
    from ioreactor.http.response import Response, ResponseCache
    from ioreactor.http.sweep import ConnectionSweep
    from ioreactor.net.buffer import Buffer
    from ioreactor.net.connection import TcpConnection
    from ioreactor.net.handlers import Handler

log = logging.getLogger("ioreactor.http")

try:
    import cython
except ImportError:  # the pure build runs without Cython installed
    import ioreactor._cython as cython

if not cython.compiled:  # (the compiled build's are C constants: protocol.pxd)
    # The first four are where the parser stands (RequestParser.position), copied after
    # each read; the last two are the connection's own.
    IDLE = parsing.IDLE
    HEADERS = parsing.HEAD
    BODY = parsing.BODY
    DONE = parsing.STOPPED
    LINGER = 4

#: Seconds before the first check for drained output while parsing is paused on it;
#: each check that finds the output still full doubles the wait, up to RESUME_POLL_MAX
#: (a client that never reads costs a few checks a second until the write timeout, not
#: a hundred).
RESUME_POLL = 0.01
RESUME_POLL_MAX = 0.32


class HttpProtocol:
    """The HTTP state of one connection; see the module docstring."""

    # Slots in the order of use on the path of a read, the hot ones first: an object's
    # slots lie in that order, so a request touches its first cache line or two, not all
    # four (it counts with thousands of connections, when the protocol is rarely in cache).
    __slots__ = (  # noqa: RUF023  (order of use, not of name)
        "phase",
        "paused",
        "parser",
        "batch",
        "dispatcher",
        "direct",
        "cache",
        "queue",
        "since",
        "loop",
        "conn",
        "context",
        "limits",
        "sweep",
        "successor",
        "stall_mark",
        "stall_since",
        "eof_held",
        "resume_delay",
    )

    def __init__(
        self,
        conn: TcpConnection,
        dispatcher: Dispatcher,
        cache: ResponseCache,
        limits: Limits,
        sweep: ConnectionSweep,
        *,
        observer: ResponseObserver | None = None,
    ) -> None:
        self.conn = conn
        self.loop = conn.loop
        self.limits = limits
        self.dispatcher = dispatcher
        #: The dispatcher's own state for this connection (None until it keeps some).
        self.context: Any = None
        self.parser = RequestParser(limits, conn.loop, conn.peer)
        self.cache = cache
        #: The responses of the read being handled, joined into one ``conn.send`` when it
        #: is done (None outside a read: responses then go to the connection at once).
        self.batch: list[bytes] | None = None
        #: An answer due now may go straight into the batch: nothing waits in the queue
        #: and no observer wants every response (an access log; the queue keeps this up
        #: to date). The common path then never touches the queue: one object fewer out
        #: of cache per request.
        self.direct = observer is None or not observer.every
        self.queue = ResponseQueue(self, cache, observer=observer)
        self.phase = IDLE
        #: When the current phase's deadline began to run.
        self.since = conn.loop.now
        self.paused = False
        #: The peer half-closed while input was held unparsed (parsing paused): the
        #: connection finishes once that input has been parsed.
        self.eof_held = False
        #: The current wait between checks for drained output (see RESUME_POLL).
        self.resume_delay = RESUME_POLL
        #: The handler the connection is being handed over to (see :meth:`hand_over`).
        self.successor: Handler | None = None
        self.stall_mark = -1.0
        self.stall_since = 0.0
        self.sweep = sweep
        sweep.protocols.add(self)

    def __repr__(self) -> str:
        return f"<HttpProtocol {self.conn.peer} phase={self.phase} waiting={self.queue.waiting}>"

    # -- input -------------------------------------------------------------------------------

    def feed(self, buffer: Buffer) -> None:
        """Parse what ``buffer`` holds; the responses it produces leave in one ``conn.send``."""
        receive(self, self.conn, buffer)

    def _event(self, event: Event) -> None:
        """Hand the dispatcher an event other than a request (see :func:`receive_read`)."""
        if type(event) is bytes:
            self.dispatcher.body(self, event)
        elif type(event) is End:
            answer = self.dispatcher.end(self, event.request)
            if answer is not LATER:
                self.queue.respond(event.request, answer)
        elif event is CONTINUE:
            self.dispatcher.expect_continue(self)
        else:
            assert isinstance(event, HttpError)
            self.fail(event)

    def _settle(self) -> None:
        """The phase after a read that did not end between requests: where the parser
        stands (DONE once it stopped: its last response closes the connection)."""
        parser = self.parser
        if parser.head_began:
            self.since = self.loop.now  # the head's deadline runs from now
        self.phase = parser.position

    def _feed_held(self, buffer: Buffer) -> None:
        """Input while no more is parsed, or while parsing waits for output to drain."""
        if self.phase >= DONE:
            if not self.keeps_input:
                buffer.retrieve_all()
            elif len(buffer) > self.limits.max_buffered_input:
                self.conn.force_close()  # kept for the successor, within bounds
            return
        conn = self.conn
        if conn.output_size <= conn.low_water_mark and (
            self.queue.waiting < self.limits.max_pending_responses
        ):
            # The output drained (so the connection reads again) before the resume poll
            # came: parse now instead of holding input a reading peer may send.
            self._unpause()
            receive(self, conn, buffer)
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
                    size = len(piece)
                    used = receive_read(self, conn, piece)
                consumed += used
                if used < size:
                    break  # an upgrade request ended in this slice: the rest is not HTTP
                if self.paused:
                    break  # responses piled up: room() resumes once they went out
                if conn.output_size >= conn.high_water_mark:
                    self.paused = True
                    self.resume_delay = RESUME_POLL
                    self.loop.call_later(RESUME_POLL, self._resume)
                    break
        if consumed >= n or (self.phase >= DONE and not self.keeps_input):
            buffer.retrieve_all()
        else:
            buffer.retrieve(consumed)  # the rest waits (for parsing, or the successor)

    def _resume(self) -> None:
        """Parse the input kept while paused, once responses and output have drained."""
        conn = self.conn
        if not self.paused or conn.closed or self.phase >= DONE:
            return
        if conn.output_size > conn.low_water_mark:
            self.resume_delay = delay = min(2 * self.resume_delay, RESUME_POLL_MAX)
            self.loop.call_later(delay, self._resume)
            return
        if self.queue.waiting >= self.limits.max_pending_responses:
            return  # room() calls again when one goes out
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

    def send_batch(self) -> None:
        """Hand the responses of the read being handled to the connection, in one
        ``conn.send`` (before a FIN or a hand-over)."""
        batch = self.batch
        if batch:
            self.conn.send(batch[0] if len(batch) == 1 else b"".join(batch))
            batch.clear()

    def room(self) -> None:
        """The queue sent responses (ResponseQueue): parsing may go on if it waited."""
        if self.paused and self.queue.waiting < self.limits.max_pending_responses:
            self.loop.call_soon(self._resume)

    # -- ending ------------------------------------------------------------------------------

    def fail(self, err: HttpError) -> None:
        """A protocol error: answer it after the earlier responses, then close."""
        if self.phase >= DONE:
            return
        self.phase = DONE
        self.dispatcher.broken(self)
        self.queue.refuse(err)

    def finish(self) -> None:
        """No more requests: close once the queued responses are out."""
        if self.phase < DONE:
            self.phase = DONE
        self.queue.close_when_sent()

    def linger(self) -> None:
        """The last response is queued on the connection (ResponseQueue): send FIN after
        the output drains; discard input until the peer closes."""
        self.phase = LINGER
        self.since = self.loop.now
        self.send_batch()
        self.conn.shutdown()

    @property
    def keeps_input(self) -> bool:
        """Input that arrives once no more is parsed is kept (not discarded): for the
        successor of a hand-over, or for one an ``Upgrade`` request may still get (the
        dispatcher decides after the read, an ASGI application even later)."""
        return self.successor is not None or (self.parser.upgrading and self.phase == DONE)

    def hand_over(self, request: Request, response: Response | bytes, successor: Handler) -> None:
        """Answer ``request`` with ``response`` in its turn, then the connection leaves
        HTTP: ``successor`` becomes its handler (``on_connection``, then ``on_message``
        with any input that arrived meanwhile, then every later event). No more input
        is parsed. The step a WebSocket takes after ``101 Switching Protocols``; a
        dispatcher calls it and returns LATER (or later, once its application agreed).

        ``response`` is a :class:`Response`, or a whole head already encoded (a ``101``
        names ``Connection: Upgrade``, which a handler's Response may not set). The
        request is an ``Upgrade`` request, whose bytes after it the parser kept for the
        successor (llhttp stops there), or a keep-alive request that is the last one
        parsed (input behind it in the same read was parsed as HTTP already and is not
        passed on).
        """
        upgrade = self.parser.upgrading and self.phase <= DONE and self.successor is None
        closes = not request.keep_alive or (not isinstance(response, bytes) and response.close)
        if not upgrade and (self.phase >= DONE or closes):
            raise RuntimeError(f"{self!r}: a connection that closes cannot be handed over")
        self.phase = DONE
        self.successor = successor
        if isinstance(response, bytes):
            self.queue.emit(response)
        else:
            request.keep_alive = True  # (an upgrade request's says close until now)
            self.queue.respond(request, response)
        self.queue.hand_over_when_sent(successor)

    def transfer(self, successor: Handler) -> None:
        """The queue reached the hand-over (ResponseQueue): the successor takes the
        connection now."""
        self.send_batch()
        self.sweep.protocols.discard(self)
        conn = self.conn
        conn.context = None
        conn.set_handler(successor)
        successor.on_connection(conn)
        # Input held meanwhile: on the next turn, when no feed holds a view of it.
        self.loop.call_soon(self._give_held_input, successor)

    def _give_held_input(self, successor: Handler) -> None:
        conn = self.conn
        if len(conn.input) and not conn.closed and conn.handler is successor:
            successor.on_message(conn, conn.input)

    def on_eof(self) -> bool:
        """The peer half-closed. Keep writing if responses are still on their way, and
        parse first what was held while parsing paused (pipelined requests, then FIN)."""
        if self.phase == LINGER:
            return False
        if self.paused and len(self.conn.input) and self.phase < DONE:
            self.eof_held = True
            return True
        if not self.queue.idle:
            self.finish()
            return True
        return False

    def _finish_after_held_input(self) -> None:
        """The held input of a half-closed peer is parsed: finish the connection."""
        if self.eof_held and not self.paused and not len(self.conn.input):
            self.eof_held = False
            self.finish()

    def shutdown(self) -> None:
        """Graceful server shutdown: finish the request in flight, then close."""
        self.parser.last_request()  # the request in flight is answered with Connection: close
        if self.phase == IDLE:
            if self.since == self.loop.now == self.conn.last_read:
                # Accepted in this very loop iteration (taken from the listen queue as
                # the server stops accepting): its first request is most likely on its
                # way. It gets that request answered with Connection: close, or the
                # header timeout closes it.
                return
            if self.queue.idle:
                self.phase = DONE
                self.conn.close()
            else:
                self.phase = DONE
                self.queue.close_after_last()

    def on_close(self) -> None:
        """The connection is gone: stop streams and files, release what is held, and tell
        the dispatcher (an application waiting on this connection learns it is gone)."""
        self.phase = LINGER
        self.queue.cancel()
        self.sweep.protocols.discard(self)
        self.dispatcher.closed(self)

    # -- timeouts (called by the loop's sweep) -----------------------------------------------

    def check_timeouts(self, now: float) -> None:
        """Apply the header, body, idle, linger and write deadlines at time ``now``."""
        limits = self.limits
        conn = self.conn
        phase = self.phase
        if phase == IDLE:
            if self.queue.idle:
                served = self.parser.requests_left < limits.max_requests_per_connection
                timeout = limits.keepalive_timeout if served else limits.header_timeout
                # Not last_read: bytes that start no request (empty lines, which llhttp
                # skips) must not keep an idle connection open. A served request's
                # response moves last_write; ``since`` is the connection's start.
                if now - max(self.since, conn.last_write) > timeout:
                    self.phase = DONE
                    self._timed_out("keep-alive" if served else "header")
                    conn.close()
                    return
        # While parsing is paused the wait is the server's (responses or output still
        # draining), not the client's: no head or body deadline runs (see _unpause).
        elif phase == HEADERS:
            if not self.paused and now - self.since > limits.header_timeout:
                self._timed_out("header")
                self.fail(HttpError(408, "Request Timeout", close=True))
        elif phase == BODY:
            if not self.paused and now - max(self.since, conn.last_read) > limits.body_timeout:
                self._timed_out("body")
                self.fail(HttpError(408, "Request Timeout", close=True))
        elif (
            phase == LINGER
            and not conn.output_size
            and now - max(self.since, conn.last_write) > limits.linger_timeout
        ):
            # Only once the last response has gone out: until then a slow reader is
            # still being served (the write timeout drops one that stops reading).
            conn.force_close()
            return
        if conn.output_size or self.queue.sending_file:
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

    def _timed_out(self, kind: str) -> None:
        observer = self.queue.observer
        if observer is not None:
            observer.timed_out(kind)


def receive(handler: object, conn: TcpConnection, buffer: Buffer) -> None:
    """``HttpHandler.on_message``: parse what ``conn.input`` holds (input kept from an
    earlier read, held while paused, or too large for one parse). ``handler`` is unused:
    the state is the connection's :class:`HttpProtocol`."""
    protocol: HttpProtocol = conn.context
    if protocol.phase >= DONE or protocol.paused:
        protocol._feed_held(buffer)
        return
    if len(buffer) > FEED_SLICE:
        protocol._feed_large(buffer)
        return
    with buffer.peek() as data:
        receive_read(handler, conn, data)
    buffer.retrieve_all()


def receive_read(
    handler: object, conn: TcpConnection, data: memoryview | bytearray, size: int = -1
) -> int:
    """``HttpHandler.on_read``: parse a read straight from the loop's read buffer, then
    dispatch what it completed; the responses it produces leave in one ``conn.send``.
    ``data`` is the read, or (``size`` given) the loop's read buffer whose first
    ``size`` bytes are the read (``HttpHandler._read_scratch``, the compiled build).

    A function of the handler rather than a method of the protocol, so a read costs one
    Python call before the parser; the state is the connection's :class:`HttpProtocol`.
    Returns 0 (the connection keeps the read in ``conn.input`` for :func:`receive`)
    when parsing waits for output to drain, the read needs slicing, or the input is kept
    for the connection's successor.
    """
    protocol: HttpProtocol = conn.context
    n = len(data) if size < 0 else size
    if protocol.phase >= DONE:
        return 0 if protocol.keeps_input else n  # kept for a successor, or discarded
    if protocol.paused or n > FEED_SLICE:
        return 0
    batch: list[bytes] = []
    protocol.batch = batch
    parser = protocol.parser
    events = parser.feed(data, size)
    if events:
        # The parser's events, in order, until one ends the connection (the requests
        # parsed behind it are never run). A request is the common event: it is handled
        # here, the others in _event().
        dispatcher = protocol.dispatcher
        try:
            for event in events:
                if protocol.phase >= DONE:
                    break
                if type(event) is not Request:
                    protocol._event(event)
                    continue
                request: Request = event
                answer = dispatcher.request(protocol, request)
                if (
                    type(answer) is str
                    and protocol.direct
                    and request.keep_alive
                    and request.version == HTTP_11
                    and request.method != "HEAD"
                ):
                    # The common answer: text due at once, the whole keep-alive response
                    # cached per second. render()'s first branch and respond(), inlined
                    # (a call and its checks: 0.06 us of 1.2 per request in process).
                    cache = protocol.cache
                    batch.append(cache.texts.get(answer) or cache.text_response(answer))
                elif answer is not LATER:
                    protocol.queue.respond(request, answer)
        except Exception:
            log.exception("%r: dispatching failed", protocol)
            protocol.fail(HttpError(500, "Internal Server Error", close=True))
    if protocol.phase < DONE:
        if parser.position == IDLE:
            protocol.phase = IDLE
        else:
            protocol._settle()
    protocol.batch = None
    # This read's responses, in one conn.send: send_batch(), inlined (as a call, the
    # pure build's 38,500 instructions per keep-alive GET become 39,200; callgrind).
    if batch:
        conn.send(batch[0] if len(batch) == 1 else b"".join(batch))
    if not protocol.direct and protocol.queue.waiting >= protocol.limits.max_pending_responses:
        protocol.paused = True
    if parser.upgraded_at >= 0:
        # An upgrade request ended in this read: the bytes after it are the new
        # protocol's, kept in conn.input for the successor (see keeps_input).
        at = parser.upgraded_at
        parser.upgraded_at = -1
        return at if protocol.keeps_input else n
    return n
