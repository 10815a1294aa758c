"""WSGI applications on the reactor: the dispatcher that runs them in a thread pool.

Data flow::

    RequestParser events --HttpProtocol--> WsgiDispatcher (loop thread)
        request: /static/... --> StaticFiles on the loop (sendfile), else
                 the whole body received first (or, --stream-body, fed while it runs)
        --> a WsgiCall: its place in the response queue reserved, handed to the pool
            (one call at a time per connection: pipelined requests run in order)
    pool thread: environ --> app(environ, start_response) --> ResponseWriter
        --> loop.call_soon_threadsafe(answer) --> protocol.queue.fill(slot, answer)
            --> the connection's output buffer (one send per loop iteration)

The reactor reads every request, bounded by the HTTP limits and deadlines, before a
thread sees it: a slow client costs a connection, never a thread. Responses leave
through the connection's output buffer; a thread waits only while a streamed body is
more than the connection's high water mark ahead of its reader (bounded by the write
deadline), see :mod:`ioreactor.http.wsgi.response`.

The pool deadline (``pool_timeout``): a request handed to the pool and not answered
within it gets ``503``. One that still waits for a thread is withdrawn (it never runs);
one whose application call has not returned is abandoned -- its client gets the 503,
one WARNING line names the call, and the thread stays busy until the call returns (a
Python thread cannot be stopped; the pool's threads are daemons, so the process still
exits). A response that has begun streaming has no pool deadline (the write deadline
still applies). The checks run once a second per loop: no timer per request.
"""

from __future__ import annotations

import collections
import inspect
import io
import logging
import threading
from typing import TYPE_CHECKING, Any

from ioreactor.http.dispatch import LATER, Dispatcher
from ioreactor.http.errors import HttpError
from ioreactor.http.response import FileResponse, StreamingResponse, error_response
from ioreactor.http.wsgi.body import StreamedInput
from ioreactor.http.wsgi.environ import ServerEnviron, path_info, request_environ
from ioreactor.http.wsgi.pool import PoolJob, WorkerPool
from ioreactor.http.wsgi.response import ClientGone, FileWrapper, ResponseWriter

if TYPE_CHECKING:
    from ioreactor.http.protocol import HttpProtocol
    from ioreactor.http.request import Request
    from ioreactor.http.response_queue import Slot
    from ioreactor.http.static import StaticFiles
    from ioreactor.loop.event_loop import EventLoop
    from ioreactor.loop.timers import TimerHandle

log = logging.getLogger("ioreactor.http.wsgi")

#: Threads running the application per serving process (gunicorn's ``--threads``).
DEFAULT_THREADS = 8
#: Seconds a request handed to the pool may go unanswered before it gets 503.
POOL_TIMEOUT = 30.0
#: Seconds between two checks of a loop's pool deadlines.
POOL_CHECK_INTERVAL = 1.0

WsgiApp = Any  # Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


class _Cut:
    __slots__ = ()

    def __repr__(self) -> str:
        return "CUT"


#: What a call returns when its response was cut (the application failed after the
#: head went out, or the client went away): the connection is closing, and the
#: requests waiting behind it on that connection never run.
CUT = _Cut()


class WsgiCall(PoolJob):
    """One request's application call: made on the loop, run on a pool thread."""

    __slots__ = (
        "answered",
        "body",
        "dispatcher",
        "path",
        "protocol",
        "released",
        "request",
        "since",
        "slot",
    )

    def __init__(
        self,
        dispatcher: WsgiDispatcher,
        protocol: HttpProtocol,
        request: Request,
        path: str,
        body: io.BytesIO | StreamedInput,
    ) -> None:
        super().__init__()
        self.dispatcher = dispatcher
        self.protocol = protocol
        self.request = request
        self.path = path
        self.body = body
        self.slot: Slot | None = None
        #: Loop time when the call was handed to the pool (its deadline runs from then).
        self.since = 0.0
        #: The call's answer reached the response queue (or a 503 took its place).
        self.answered = False
        #: The connection's next call may go (this one ended, or was abandoned).
        self.released = False

    def __repr__(self) -> str:
        request = self.request
        return f"<WsgiCall {request.method} {request.target} from {request.peer}>"

    def run(self) -> None:
        """Pool thread: build the environ, call the application, post the answer."""
        loop = self.protocol.loop
        dispatcher = self.dispatcher
        answer = dispatcher.call_app(self)
        loop.call_soon_threadsafe(dispatcher.call_done, self, answer)

    def post(self, answer: object) -> None:
        """Pool thread: an answer before the call returns (a streamed response)."""
        self.protocol.loop.call_soon_threadsafe(self.dispatcher.call_answered, self, answer)


class _Exchange:
    """The dispatcher's state on one connection (``protocol.context``)."""

    __slots__ = ("chunks", "environ", "path", "running", "streamed", "waiting")

    def __init__(self, environ: dict[str, Any]) -> None:
        #: The keys every request of the connection shares (scheme, client, server).
        self.environ = environ
        #: The call that has the connection's turn in the pool (None: none).
        self.running: WsgiCall | None = None
        #: Calls dispatched behind it, in order (None when there are none).
        self.waiting: collections.deque[WsgiCall] | None = None
        #: The body so far of the request whose body is arriving, and its PATH_INFO.
        self.chunks: list[bytes] | None = None
        self.path: str | None = None
        #: ``--stream-body``: the input the running application reads.
        self.streamed: StreamedInput | None = None


class _LoopCalls:
    """The calls one loop has handed to the pool, oldest first, and the timer that
    applies their deadline."""

    __slots__ = ("calls", "timer")

    def __init__(self) -> None:
        self.calls: dict[WsgiCall, None] = {}
        self.timer: TimerHandle | None = None


class WsgiDispatcher(Dispatcher):
    """Serves a PEP 3333 application (see the module docstring).

    ``threads``: the pool's threads (per serving process); ``root_path``: the
    ``SCRIPT_NAME`` the application is mounted at; ``stream_body``: run the application
    at the request head with ``wsgi.input`` fed as the body arrives (else the body is
    received whole first); ``static``: files served by the reactor under ``/static``;
    ``multiprocess``: other processes run the same application (``wsgi.multiprocess``).
    """

    __slots__ = (
        "_loops",
        "_loops_lock",
        "app",
        "pool",
        "pool_timeout",
        "server",
        "server_name",
        "static",
        "static_prefix",
        "stream_body",
    )

    def __init__(
        self,
        app: WsgiApp,
        *,
        threads: int = DEFAULT_THREADS,
        root_path: str = "",
        stream_body: bool = False,
        pool_timeout: float = POOL_TIMEOUT,
        static: StaticFiles | None = None,
        static_prefix: str = "/static",
        multiprocess: bool = False,
    ) -> None:
        if pool_timeout <= 0:
            raise ValueError(f"pool_timeout must be > 0, got {pool_timeout}")
        if root_path and (not root_path.startswith("/") or "?" in root_path):
            raise ValueError(f"root_path must be a path such as /app, got {root_path!r}")
        self.app = app
        self.server_name = "ioreactor"
        self.pool = WorkerPool(threads)
        self.pool_timeout = pool_timeout
        self.stream_body = stream_body
        self.static = static
        self.static_prefix = static_prefix.rstrip("/")
        self.server = ServerEnviron(
            root_path=root_path,
            multithread=threads > 1,
            multiprocess=multiprocess,
            file_wrapper=FileWrapper,
        )
        self._loops: dict[EventLoop, _LoopCalls] = {}
        self._loops_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<WsgiDispatcher {self.app!r} {self.pool!r}>"

    def close(self) -> None:
        """Stop the pool's threads once their calls are done, and the deadline timers."""
        self.pool.close()
        with self._loops_lock:
            for calls in self._loops.values():
                if calls.timer is not None:
                    calls.timer.cancel()
            self._loops.clear()

    # -- the Dispatcher interface (loop thread) -------------------------------------------

    def request(self, protocol: HttpProtocol, request: Request) -> object:
        static = self.static
        if static is not None and request.body is not None and self._is_static(request):
            request.params = {"path": request.path[len(self.static_prefix) + 1 :]}
            return static(request)
        exchange = protocol.context
        if exchange is None:
            exchange = protocol.context = self._exchange(protocol)
        path = path_info(request.target, self.server.root_path)
        if request.body is None:  # the body follows
            if self.stream_body and path is not None:
                conn = protocol.conn
                streamed = exchange.streamed = StreamedInput(
                    timeout=protocol.limits.body_timeout,
                    pause=conn.pause_reading,
                    resume=conn.resume_reading,
                    gone=lambda: conn.closed,
                )
                self._dispatch(
                    protocol, exchange, WsgiCall(self, protocol, request, path, streamed)
                )
            else:
                exchange.chunks = []
                exchange.path = path
            return LATER
        if path is None:
            return error_response(HttpError(404, "Not Found"))
        self._dispatch(protocol, exchange, WsgiCall(self, protocol, request, path, io.BytesIO()))
        return LATER

    def body(self, protocol: HttpProtocol, chunk: bytes) -> None:
        exchange: _Exchange = protocol.context
        if exchange.streamed is not None:
            exchange.streamed.feed(chunk)
        elif exchange.chunks is not None:
            exchange.chunks.append(chunk)

    def end(self, protocol: HttpProtocol, request: Request) -> object:
        exchange: _Exchange = protocol.context
        if exchange.streamed is not None:
            exchange.streamed.finish()
            exchange.streamed = None
            return LATER
        chunks, path = exchange.chunks, exchange.path
        exchange.chunks = exchange.path = None
        if path is None:
            return error_response(HttpError(404, "Not Found"))
        request.body = body = b"".join(chunks) if chunks else b""
        self._dispatch(
            protocol, exchange, WsgiCall(self, protocol, request, path, io.BytesIO(body))
        )
        return LATER

    # -- calls ---------------------------------------------------------------------------

    def _is_static(self, request: Request) -> bool:
        path = request.path
        prefix = self.static_prefix
        return (
            (request.method == "GET" or request.method == "HEAD")
            and path.startswith(prefix)
            and path[len(prefix) : len(prefix) + 1] == "/"
        )

    def _exchange(self, protocol: HttpProtocol) -> _Exchange:
        conn = protocol.conn
        # TLS lives in the connection (conn.tls on a TLS connection, where it exists).
        tls = getattr(conn, "tls", None) is not None
        return _Exchange(self.server.connection_environ(conn, conn.peer, tls=tls))

    def _dispatch(self, protocol: HttpProtocol, exchange: _Exchange, call: WsgiCall) -> None:
        call.slot = protocol.queue.reserve(call.request)
        if exchange.running is None:
            exchange.running = call
            self._submit(call)
        elif exchange.waiting is None:
            exchange.waiting = collections.deque((call,))
        else:
            exchange.waiting.append(call)

    def _submit(self, call: WsgiCall) -> None:
        loop = call.protocol.loop
        calls = self._loops.get(loop)
        if calls is None:
            calls = self._loop_calls(loop)
        call.since = loop.now
        calls.calls[call] = None
        self.pool.submit(call)

    def _loop_calls(self, loop: EventLoop) -> _LoopCalls:
        with self._loops_lock:
            calls = self._loops.get(loop)
            if calls is None:
                calls = self._loops[loop] = _LoopCalls()
                interval = min(POOL_CHECK_INTERVAL, self.pool_timeout / 2)
                calls.timer = loop.call_every(interval, self._check_deadlines, loop)
        return calls

    def call_app(self, call: WsgiCall) -> object:
        """Pool thread: run the application for ``call``; returns the answer, None once
        a stream carries it, or CUT."""
        request = call.request
        protocol = call.protocol
        exchange: _Exchange = protocol.context
        environ = request_environ(exchange.environ, request, call.path, call.body)
        if "CONTENT_LENGTH" not in environ and request.body:
            environ["CONTENT_LENGTH"] = str(len(request.body))  # a chunked body, received
        writer = ResponseWriter(
            request.method, request.version, protocol.conn, call.post, protocol.limits.write_timeout
        )
        result: Any = None
        try:
            result = self.app(environ, writer.start_response)
            if type(result) is FileWrapper:
                answer = writer.file_answer(result)
                if answer is not None:
                    return answer
            writer.gather = type(result) is list or type(result) is tuple
            write = writer.write
            for block in result:
                write(block)
            return writer.finish()
        except ClientGone as exc:
            log.debug("%r: %s", call, exc)
            return CUT
        except Exception:
            log.exception("WSGI application failed on %s %s", request.method, request.target)
            if writer.stream is not None:
                writer.stream.abort()  # the head is out: the client sees a truncated body
                return CUT
            return error_response(HttpError(500, "Internal Server Error"))
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                try:
                    close()
                except Exception:
                    log.exception("close() of the WSGI response iterable failed")
            if isinstance(call.body, StreamedInput):
                call.body.close()

    def call_answered(self, call: WsgiCall, answer: object) -> None:
        """Loop thread: an answer before the call returned (a stream)."""
        if call.answered:
            _abandon(answer)  # a 503 took its place
            return
        call.answered = True
        self._forget(call)
        assert call.slot is not None
        call.protocol.queue.fill(call.slot, answer)

    def call_done(self, call: WsgiCall, answer: object) -> None:
        """Loop thread: the application call returned; the connection's next call goes."""
        self._forget(call)
        slot = call.slot
        assert slot is not None
        if answer is CUT or answer is None:
            if not call.answered:  # (a stream always answers first: a bug of ours)
                call.answered = True
                answer = error_response(HttpError(500, "Internal Server Error", close=True))
                call.protocol.queue.fill(slot, answer)
        elif not call.answered:
            call.answered = True
            call.protocol.queue.fill(slot, answer)
        else:
            _abandon(answer)  # a 503 took its place
        self._release(call, cut=answer is CUT)

    def _forget(self, call: WsgiCall) -> None:
        calls = self._loops.get(call.protocol.loop)
        if calls is not None:
            calls.calls.pop(call, None)

    def _release(self, call: WsgiCall, *, cut: bool = False) -> None:
        """The connection's turn passes to its next call (unless it is closing)."""
        if call.released:
            return
        call.released = True
        protocol = call.protocol
        exchange: _Exchange = protocol.context
        if exchange.running is not call:
            return
        exchange.running = None
        waiting = exchange.waiting
        if not waiting:
            return
        if cut or protocol.queue.ended or not call.request.keep_alive:
            exchange.waiting = None  # behind a close: never run, never answered
            return
        following = waiting.popleft()
        if not waiting:
            exchange.waiting = None
        exchange.running = following
        self._submit(following)

    # -- the pool deadline ---------------------------------------------------------------

    def _check_deadlines(self, loop: EventLoop) -> None:
        """Answer 503 for every call handed to the pool more than ``pool_timeout`` ago."""
        calls = self._loops.get(loop)
        if not calls or not calls.calls:
            return
        expired = loop.now - self.pool_timeout
        withdrawn = 0
        for call in list(calls.calls):
            if call.since > expired:
                break  # handed over in order: the rest are younger
            del calls.calls[call]
            if call.answered:
                continue
            if self.pool.withdraw(call):
                withdrawn += 1
                self._unavailable(call, "no thread free", close=False)
            else:
                log.warning(
                    "WSGI application has not answered %s %s from %s within %g s: 503; "
                    "its thread stays busy until the call returns",
                    call.request.method,
                    call.request.target,
                    call.request.peer,
                    self.pool_timeout,
                )
                # A body being streamed to the call may be half read: the framing of the
                # connection's input is lost, so it closes after the 503.
                self._unavailable(call, "no answer", close=isinstance(call.body, StreamedInput))
        if withdrawn:
            log.warning(
                "%d request(s) waited %g s for a WSGI thread (all %d busy): 503",
                withdrawn,
                self.pool_timeout,
                self.pool.threads,
            )

    def _unavailable(self, call: WsgiCall, why: str, *, close: bool) -> None:
        call.answered = True
        assert call.slot is not None
        call.protocol.queue.fill(
            call.slot, error_response(HttpError(503, f"Service Unavailable ({why})", close=close))
        )
        self._release(call)


def _abandon(answer: object) -> None:
    """An answer that will never be sent: close its file, cancel its stream."""
    if isinstance(answer, FileResponse):
        answer.release()
    elif isinstance(answer, StreamingResponse):
        answer.cancel()


def is_wsgi_callable(obj: object) -> bool:
    """Whether ``obj`` looks like a PEP 3333 application: a plain (not async) callable,
    not a class, taking exactly two positional arguments (``environ, start_response``).
    An object whose signature cannot say (a C callable, ``*args`` wrappers) is served
    with ``--interface wsgi``."""
    if not callable(obj) or inspect.isclass(obj):
        return False
    call = obj if inspect.isroutine(obj) else type(obj).__call__
    if inspect.iscoroutinefunction(call) or inspect.isasyncgenfunction(call):
        return False
    try:
        parameters = inspect.signature(obj).parameters.values()
    except (TypeError, ValueError):
        return False
    required = [
        p
        for p in parameters
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
    ]
    return len(required) == 2
