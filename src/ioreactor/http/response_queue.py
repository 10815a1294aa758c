"""Responses leave a connection in request order: the ordered response queue.

Data flow::

    a dispatcher's answer --respond(request, answer)--> render --> due now: the read's
                                                    batch (one conn.send per read)
                                                \\-> else: pending, in order
    dispatcher --reserve(request)--> a Slot in pending --fill(slot, answer)--> advance()
    advance(): bytes go out; a StreamingResponse or FileResponse at the front is started
               and holds the queue until it ends; CLOSE ends the connection there, a
               hand-over marker gives it to the next protocol there

A response answered while nothing waits ahead of it is *due*: it joins the batch of the
read being handled (all of a read's responses leave in one ``conn.send``, so 16 pipelined
requests cost one ``send``), or goes straight to the connection outside a read. Anything
else waits in ``pending`` behind the responses before it: a handler still running in the
worker pool (a reserved :class:`Slot`), a streamed body not ended yet, a file being sent.

The queue knows nothing of parsing or applications: the connection queues the answers
its dispatcher returns (:meth:`ResponseQueue.respond`), and a dispatcher whose answer
comes later -- a native pool handler, an ASGI or WSGI application -- keeps its place with
:meth:`~ResponseQueue.reserve` and sends it with :meth:`~ResponseQueue.fill`. The
connection's lifecycle (:class:`~ioreactor.http.protocol.HttpProtocol`) is told when the
queue reaches a close or a hand-over and when it has room again; it owns the read's
batch, and the common answer (a short text due at once) reaches the batch without the
queue (see ``HttpProtocol.direct``).
"""

from __future__ import annotations

import functools
import logging
from typing import TYPE_CHECKING

from ioreactor.http.head import CLOSE_FIELD, connection_field
from ioreactor.http.response import (
    FileResponse,
    ResponseCache,
    StreamingResponse,
    error_response,
    render,
)
from ioreactor.http.sendfile import FileSender

if TYPE_CHECKING:
    from ioreactor.http.errors import HttpError
    from ioreactor.http.observers import ResponseObserver
    from ioreactor.http.protocol import HttpProtocol
    from ioreactor.http.request import Request
    from ioreactor.net.connection import TcpConnection
    from ioreactor.net.handlers import Handler

log = logging.getLogger("ioreactor.http")


class Slot:
    """A response's place in the queue: not computed yet, or not sent yet."""

    __slots__ = ("request", "result")

    def __init__(
        self, request: Request, result: bytes | StreamingResponse | FileResponse | None = None
    ) -> None:
        self.request = request
        #: None until ready; then the response bytes, a StreamingResponse or FileResponse.
        self.result = result


class _Close:
    """In the queue: close the connection here; later entries are dropped."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "CLOSE"


class _HandOver:
    """In the queue: give the connection to ``successor`` here; later entries are dropped."""

    __slots__ = ("successor",)

    def __init__(self, successor: Handler) -> None:
        self.successor = successor


CLOSE = _Close()

Entry = bytes | Slot | _Close | _HandOver


class ResponseQueue:
    """The responses of one connection, in request order (module docstring)."""

    __slots__ = (
        "active",
        "advancing",
        "cache",
        "conn",
        "ended",
        "observer",
        "observes_every",
        "owner",
        "pending",
        "sender",
    )

    def __init__(
        self,
        owner: HttpProtocol,
        cache: ResponseCache,
        *,
        observer: ResponseObserver | None = None,
    ) -> None:
        self.owner = owner
        self.conn: TcpConnection = owner.conn
        self.cache = cache
        #: Told of responses (an access log: all of them), refusals, abandoned answers.
        self.observer = observer
        self.observes_every = observer is not None and observer.every
        #: Responses waiting for their turn, oldest first; None when there are none (no
        #: list on an idle connection). The owner's ``direct`` says the same without a
        #: look at this object (kept by _append and _emptied).
        self.pending: list[Entry] | None = None
        #: The streamed or file response being sent (it holds the front of the queue).
        self.active: Slot | None = None
        self.sender: FileSender | None = None
        self.advancing = False
        #: The queue reached its close (or the connection closed): answers that come
        #: later (a pool handler finishing) are dropped.
        self.ended = False

    def __repr__(self) -> str:
        return f"<ResponseQueue {self.conn.peer} waiting={self.waiting}>"

    @property
    def waiting(self) -> int:
        """Responses (and markers) waiting for their turn."""
        return len(self.pending) if self.pending else 0

    @property
    def idle(self) -> bool:
        """Nothing waits and nothing is being streamed."""
        return not self.pending and self.active is None

    @property
    def sending_file(self) -> bool:
        return self.sender is not None

    # -- answers ---------------------------------------------------------------------------

    def respond(self, request: Request, result: object) -> None:
        """Answer ``request`` with a handler's ``result`` in its turn; if the response
        closes the connection, nothing after it is answered."""
        if self.observes_every:
            assert self.observer is not None
            result = self.observer.responded(request, result)
        out = render(request, result, self.cache)
        if type(out) is bytes and not self.pending:
            self._send(out)
        else:
            self._append(out if type(out) is bytes else Slot(request, out))
            self.advance()
        if not request.keep_alive:
            self.owner.finish()

    def reserve(self, request: Request) -> Slot:
        """A place in the order for an answer that comes later (:meth:`fill`)."""
        slot = Slot(request)
        self._append(slot)
        return slot

    def fill(self, slot: Slot, result: object) -> None:
        """The answer for a reserved ``slot`` (loop thread). If the response closes the
        connection, the ones reserved after it are never sent. Dropped (a file closed, a
        stream cancelled) when the connection has ended meanwhile."""
        request = slot.request
        observer = self.observer
        if self.ended:
            if observer is not None:
                observer.abandoned(request)
            _abandon(result)
            return
        if observer is not None:
            result = observer.responded(request, result)
        slot.result = render(request, result, self.cache)
        if not request.keep_alive:
            self._close_after(slot)
        self.advance()

    def fill_rendered(self, slot: Slot, data: bytes, status: int, body_size: int) -> None:
        """The answer for a reserved ``slot``, a whole response already encoded (an
        ASGI or WSGI dispatcher encodes the heads its application sets); ``status`` and
        ``body_size`` are for the observer (access log, metrics). If
        ``slot.request.keep_alive`` is False the connection closes after it."""
        request = slot.request
        if self.ended:
            if self.observer is not None:
                self.observer.abandoned(request)
            return
        observer = self.observer
        if observer is not None:
            if status:
                observer.sent(request, status, body_size)
            else:  # no response (``data`` empty): the slot only kept its place
                observer.abandoned(request)
        pending = self.pending
        if (
            request.keep_alive
            and pending is not None
            and pending[0] is slot
            and (not self.advancing)
        ):
            # Its turn already (the common case): advance(), for one entry.
            del pending[0]
            self._send(data)
            if pending:
                self.advance()
            else:
                self._emptied()
                self.owner.room()
            return
        slot.result = data
        if not request.keep_alive:
            self._close_after(slot)
        self.advance()

    def at_front(self, slot: Slot) -> bool:
        """Whether ``slot`` is the next response to go out (nothing is queued before it)."""
        pending = self.pending
        return pending is not None and len(pending) > 0 and pending[0] is slot

    def emit(self, data: bytes) -> None:
        """Send ``data`` (a ``100 Continue``, an error) after every response queued
        before it."""
        if self.pending:
            self.pending.append(data)
        else:
            self._send(data)

    def refuse(self, err: HttpError) -> None:
        """Answer a protocol error (status and ``Connection: close``) after the responses
        before it; the connection ends then."""
        if self.observer is not None:
            self.observer.refused(self.conn.peer, err)
        self.emit(error_response(err).encode(CLOSE_FIELD, self.cache.server))
        self.close_when_sent()

    def close_when_sent(self) -> None:
        """No more responses: end the connection once the queued ones are out."""
        if self.pending:
            if CLOSE not in self.pending:
                self.pending.append(CLOSE)
        else:
            self.ended = True
            self.owner.linger()

    def hand_over_when_sent(self, successor: Handler) -> None:
        """Give the connection to ``successor`` once the queued responses are out."""
        if self.pending:
            self.pending.append(_HandOver(successor))
        else:
            self.ended = True
            self.owner.transfer(successor)

    def close_after_last(self) -> None:
        """The response still being computed last says ``Connection: close`` (graceful
        shutdown), and the connection ends after it."""
        last = self.pending[-1] if self.pending else None
        if isinstance(last, Slot) and last.result is None:
            last.request.keep_alive = False
        self.close_when_sent()

    # -- sending ---------------------------------------------------------------------------

    def _send(self, data: bytes) -> None:
        """Send now: into the batch of the read being handled (the owner joins it into
        one ``conn.send``), else to the connection."""
        batch = self.owner.batch
        if batch is not None:
            batch.append(data)
        else:
            self.conn.send(data)

    def _append(self, entry: Entry) -> None:
        if self.pending is None:
            self.pending = [entry]
            self.owner.direct = False
        else:
            self.pending.append(entry)

    def _emptied(self) -> None:
        self.pending = None
        self.owner.direct = not self.observes_every

    def _close_after(self, slot: Slot) -> None:
        """End the connection once ``slot``'s response is out; later ones are dropped."""
        pending = self.pending
        assert pending is not None  # slot is in it
        at = pending.index(slot) + 1
        if at == len(pending) or pending[at] is not CLOSE:
            pending.insert(at, CLOSE)
        self.owner.finish()

    def advance(self) -> None:
        """Send every response that is due, in order, until one is not ready yet."""
        if self.advancing:
            return  # called back from a response that finished while being started
        self.advancing = True
        try:
            pending = self.pending
            while pending:
                head = pending[0]
                if type(head) is bytes:
                    del pending[0]
                    self._send(head)
                    continue
                if head is CLOSE:
                    self._drop_pending()
                    self.ended = True
                    self.owner.linger()
                    return
                if isinstance(head, _HandOver):
                    self._drop_pending()
                    self.ended = True
                    self.owner.transfer(head.successor)
                    return
                assert isinstance(head, Slot)
                result = head.result
                if result is None or head is self.active:
                    break  # still computing, or still streaming
                if type(result) is bytes:
                    del pending[0]
                    self._send(result)
                    continue
                self.active = head
                self._start(head)
                if self.active is head:
                    break
        finally:
            self.advancing = False
        if not self.pending:
            self._emptied()
        self.owner.room()

    def _start(self, slot: Slot) -> None:
        """Begin a streamed or file response that has reached the front of the queue."""
        request = slot.request
        result = slot.result
        head = request.method == "HEAD"
        done = functools.partial(self._active_done, slot)
        server = self.cache.server
        if isinstance(result, FileResponse):
            self._send(result.encode_head(connection_field(request), server))
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
        self._send(result.encode_head(connection_field(request), server, chunked=chunked))
        result.bind(self.conn.loop, self._send, done, chunked=chunked, head_only=head)

    def _file_done(self, slot: Slot, response: FileResponse, ok: bool) -> None:
        response.release()
        self.sender = None
        if ok:
            self._active_done(slot)
        else:
            self.conn.force_close()  # the promised Content-Length cannot be met

    def _active_done(self, slot: Slot) -> None:
        if self.active is slot:
            self.active = None
            if self.pending and self.pending[0] is slot:
                del self.pending[0]
            self.advance()

    def _drop_pending(self) -> None:
        for entry in self.pending or ():
            if isinstance(entry, Slot):
                if entry.result is None and self.observer is not None:
                    self.observer.abandoned(entry.request)
                _abandon(entry.result)
        self._emptied()

    def cancel(self) -> None:
        """The connection is gone: stop streams and files, release what is held."""
        self.ended = True
        if self.sender is not None:
            self.sender.cancel()
            self.sender = None
        active = self.active
        self.active = None
        if active is not None and isinstance(active.result, FileResponse):
            active.result.release()
        self._drop_pending()
        if active is not None and isinstance(active.result, StreamingResponse):
            active.result.cancel()


def _abandon(result: object) -> None:
    """A response that will never be sent: close its file, cancel its stream."""
    if isinstance(result, FileResponse):
        result.release()
    elif isinstance(result, StreamingResponse):
        result.cancel()
