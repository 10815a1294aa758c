"""The application side of an HTTP connection: what runs the requests the parser made.

Data flow::

    RequestParser events --HttpProtocol, after feed_data returned--> Dispatcher
        request(protocol, request) / body(protocol, chunk) / end(protocol, request)
        --> the application --> its answer, returned (the protocol queues it in order)
                                or LATER: protocol.queue.reserve() now, fill() then

:class:`Dispatcher` is the seam between the wire and the application. The parser, the
response queue, the connection's lifecycle and the rendering are the same for every
application; only the dispatcher changes: :class:`AppDispatcher` runs the native
:class:`~ioreactor.http.app.App` (routing, loop or worker pool, streamed bodies), and an
ASGI or WSGI server will be another dispatcher (the application call) over the same
protocol. A dispatcher never runs inside a parser callback: the connection calls it once
``feed_data`` has returned, with the events of that feed in order. Per-connection state a
dispatcher needs lives in ``protocol.context`` (as a handler's lives in ``conn.context``).
An answer is what a handler returns (``str``, ``bytes``, a ``Response``,
``StreamingResponse`` or ``FileResponse``): a dispatcher returns it when it has it, the
common case, and the protocol renders it into the read's batch or the queue.

:class:`AppDispatcher`, per request: a literal route that runs on the loop and takes the
whole body is found with two dict lookups (``Router.plain``: its handler, no Route);
anything else is resolved
(path parameters, ``HEAD`` served by ``GET``, 404/405). A ``blocking=True`` handler runs
in the loop's worker pool; one connection's pool handlers run one at a time, in request
order (RFC 9112 9.3.2 forbids running pipelined unsafe requests in parallel), so a pool
response that closes the connection leaves the requests queued behind it unrun (9.6);
different connections' handlers run concurrently. A ``stream_body=True`` handler is
called as soon as the head is dispatched; the body chunks parsed in the same read reach
its consumer right after, the later ones as they are parsed.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Final, cast

from ioreactor.http.errors import HttpError
from ioreactor.http.response import CONTINUE, Response, error_response

if TYPE_CHECKING:
    import asyncio
    from collections.abc import Awaitable
    from concurrent.futures import Future

    from ioreactor.codec.websocket_session import WebSocketHandler
    from ioreactor.http.app import App
    from ioreactor.http.protocol import HttpProtocol
    from ioreactor.http.request import BodyConsumer, Request
    from ioreactor.http.response_queue import Slot
    from ioreactor.http.router import Route

log = logging.getLogger("ioreactor.http")


class _Later:
    """What a dispatcher returns for an answer that comes later (or at the body's end)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "LATER"


#: Returned by :meth:`Dispatcher.request` and :meth:`Dispatcher.end` when the answer
#: does not come now: the dispatcher reserved its place (``protocol.queue.reserve``) and
#: will ``fill`` it, or a request's body is still to come. (Not None: a dispatcher that
#: forgets to answer gets a 500 for a result that is not a response, not a hang.)
LATER: Final = _Later()


class Dispatcher:
    """Runs an application for the requests of every connection of a server.

    One object serves every connection (like a :class:`~ioreactor.net.handlers.Handler`);
    each call gets the connection's :class:`~ioreactor.http.protocol.HttpProtocol`,
    whose ``queue`` takes answers that come later (``reserve`` now, ``fill`` then: they
    keep their place in the order), whose ``context`` holds the dispatcher's
    per-connection state, and whose ``hand_over`` gives the connection to another
    protocol after a response (a WebSocket after ``101 Switching Protocols``). All calls
    run on the connection's loop thread, in request order.

    A subclass implements the three methods (they raise ``NotImplementedError`` here:
    the class is a compiled one in the compiled build, which calls its subclasses'
    methods in C and a Python subclass's through Python).
    """

    __slots__ = ()

    #: The name the server gives in its ``Server`` field.
    server_name: str = "ioreactor"

    def request(self, protocol: HttpProtocol, request: Request) -> object:
        """A request: complete (``request.body`` is bytes), or its head with its body
        still to come (``request.body is None``: :meth:`body` calls follow, then
        :meth:`end`). Returns its answer, or :data:`LATER`."""
        raise NotImplementedError(f"{type(self).__name__}.request()")

    def body(self, protocol: HttpProtocol, chunk: bytes) -> None:
        """A piece of the body of the request whose head came last (chunked coding
        removed; ``Limits.max_body`` already enforced)."""
        raise NotImplementedError(f"{type(self).__name__}.body()")

    def end(self, protocol: HttpProtocol, request: Request) -> object:
        """The body of ``request`` is complete. Returns its answer, or :data:`LATER`."""
        raise NotImplementedError(f"{type(self).__name__}.end()")

    def needs_asyncio(self) -> bool:
        """The application awaits: the connection's reactor must be driven by an asyncio
        loop (:mod:`ioreactor.aio`), as ``run_server`` does for such a handler."""
        return False

    def expect_continue(self, protocol: HttpProtocol) -> None:
        """The request whose head comes next waits for ``100 Continue`` before sending
        its body. By default it is sent now, in order; an ASGI dispatcher sends it when
        the application first asks for the body."""
        protocol.queue.emit(CONTINUE)

    def closed(self, protocol: HttpProtocol) -> None:
        """The connection is gone (its requests in flight will never be answered)."""

    def broken(self, protocol: HttpProtocol) -> None:
        """The input failed (a protocol error, a broken limit, a timeout): the request
        whose body was arriving will never complete, nothing after it is parsed, and
        the error is answered after the responses before it."""

    async def startup(self) -> None:
        """Runs on the asyncio loop before the server accepts (:meth:`needs_asyncio`):
        an ASGI application's lifespan startup. Raising stops the server."""

    async def shutdown(self) -> None:
        """Runs on the asyncio loop after a graceful stop let the requests in flight
        finish (:meth:`needs_asyncio`)."""


class WrappingDispatcher(Dispatcher):
    """A dispatcher around another (``inner``): every call goes to ``inner`` unless a
    subclass -- forwarding headers, metrics -- overrides it to add its own step."""

    __slots__ = ("inner", "server_name")

    def __init__(self, inner: Dispatcher) -> None:
        self.inner = inner
        self.server_name = inner.server_name

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.inner!r}>"

    def request(self, protocol: HttpProtocol, request: Request) -> object:
        return self.inner.request(protocol, request)

    def body(self, protocol: HttpProtocol, chunk: bytes) -> None:
        self.inner.body(protocol, chunk)

    def end(self, protocol: HttpProtocol, request: Request) -> object:
        return self.inner.end(protocol, request)

    def needs_asyncio(self) -> bool:
        return self.inner.needs_asyncio()

    def expect_continue(self, protocol: HttpProtocol) -> None:
        self.inner.expect_continue(protocol)

    def closed(self, protocol: HttpProtocol) -> None:
        self.inner.closed(protocol)

    def broken(self, protocol: HttpProtocol) -> None:
        self.inner.broken(protocol)

    async def startup(self) -> None:
        await self.inner.startup()

    async def shutdown(self) -> None:
        await self.inner.shutdown()


class _Exchange:
    """:class:`AppDispatcher`'s state on one connection (``protocol.context``), made on
    the first request that has a body or runs in the pool."""

    __slots__ = ("chunks", "consumer", "failure", "pool_busy", "pool_waiting", "route")

    def __init__(self) -> None:
        #: The route of the request whose body is arriving (None: 404/405 in failure).
        self.route: Route | None = None
        #: The body so far of a route that takes it whole (None for a streaming one).
        self.chunks: list[bytes] | None = None
        self.consumer: BodyConsumer | None = None
        #: The answer already decided for the request whose body is arriving.
        self.failure: HttpError | None = None
        #: A blocking handler of this connection is running in the pool; the requests
        #: dispatched meanwhile for blocking routes wait here, in order (None when none).
        self.pool_busy = False
        self.pool_waiting: list[tuple[Slot, Callable[[Request], object]]] | None = None


class AppDispatcher(Dispatcher):
    """Runs an :class:`~ioreactor.http.app.App`'s handlers (module docstring)."""

    __slots__ = ("app", "plain", "router", "server_name")

    def __init__(self, app: App) -> None:
        self.app = app
        self.router = app.router
        self.server_name = app.server_name
        self.plain = app.router.plain

    def __repr__(self) -> str:
        return f"<AppDispatcher {len(self.router.routes())} routes>"

    def needs_asyncio(self) -> bool:
        return self.router.awaits()

    def request(self, protocol: HttpProtocol, request: Request) -> object:
        handlers = self.plain.get(request.path)
        handler = handlers.get(request.method) if handlers is not None else None
        if handler is None or request.body is None or not request.keep_alive:
            return self._route(protocol, request)
        try:
            return handler(request)
        except HttpError as exc:
            return error_response(exc)
        except Exception:
            log.exception("%r: handler for %s failed", protocol, request.path)
            return error_response(HttpError(500, "Internal Server Error"))

    def body(self, protocol: HttpProtocol, chunk: bytes) -> None:
        exchange = _exchange(protocol)
        if exchange.chunks is not None:
            exchange.chunks.append(chunk)
        elif exchange.consumer is not None:
            try:
                exchange.consumer.on_data(chunk)
            except HttpError as exc:
                exchange.failure = exc.with_traceback(None)
                exchange.consumer = None
            except Exception:
                log.exception("%r: body consumer failed", protocol)
                exchange.failure = HttpError(500, "Internal Server Error")
                exchange.consumer = None

    def end(self, protocol: HttpProtocol, request: Request) -> object:
        exchange = _exchange(protocol)
        route = exchange.route
        chunks = exchange.chunks
        consumer = exchange.consumer
        failure = exchange.failure
        exchange.route = exchange.chunks = exchange.consumer = exchange.failure = None
        if failure is not None:
            return error_response(failure)
        assert route is not None  # (a request without one has its failure)
        if consumer is not None:
            try:
                return consumer.on_end()
            except HttpError as exc:
                return error_response(exc)
            except Exception:
                log.exception("%r: body consumer for %s failed", protocol, route.pattern)
                return error_response(HttpError(500, "Internal Server Error"))
        if chunks:
            request.body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        else:
            request.body = b""
        return self._run(protocol, route, request)

    def _route(self, protocol: HttpProtocol, request: Request) -> object:
        """A request the plain table does not answer: path parameters, HEAD, 404/405,
        handlers that run in the pool or take the body as a stream, heads of bodies,
        the last request of a connection (an Upgrade among them)."""
        if protocol.parser.upgrading and self.app.websockets:
            websocket = self.app.websockets.get(request.path)
            if websocket is not None:
                return _upgrade(protocol, request, websocket)
        route: Route | None
        try:
            route, request.params = self.router.resolve(request.method, request.path)
        except HttpError as exc:
            if request.body is not None:
                return error_response(exc)
            route = None
            failure: HttpError | None = exc.with_traceback(None)
        else:
            failure = None
        if request.body is not None:  # complete: no body, or none to wait for
            assert route is not None
            return self._run(protocol, route, request)
        exchange = _exchange(protocol)
        exchange.route = route
        exchange.failure = failure
        if route is None:
            return LATER  # the body is read and dropped; its end answers 404/405
        if not route.stream_body:
            exchange.chunks = []
            return LATER
        try:
            exchange.consumer = cast("BodyConsumer", route.handler(request))
        except HttpError as exc:
            exchange.failure = exc.with_traceback(None)
        except Exception:
            log.exception("%r: handler for %s failed", protocol, route.pattern)
            exchange.failure = HttpError(500, "Internal Server Error")
        return LATER

    def closed(self, protocol: HttpProtocol) -> None:
        for websocket in self.app.websockets.values():
            websocket.forget(protocol.conn)  # (closed before its hand-over)

    def _run(self, protocol: HttpProtocol, route: Route, request: Request) -> object:
        """A complete request: its handler, on the loop, awaited, or in the pool."""
        if route.awaits:
            return _start_coroutine(protocol, route, request)
        if route.blocking:
            slot = protocol.queue.reserve(request)
            exchange = _exchange(protocol)
            if exchange.pool_busy:
                # One blocking handler at a time per connection: pipelined requests run
                # in order (RFC 9112 9.3.2: unsafe ones must not run in parallel), and
                # those behind a response that closes the connection never run at all.
                if exchange.pool_waiting is None:
                    exchange.pool_waiting = [(slot, route.handler)]
                else:
                    exchange.pool_waiting.append((slot, route.handler))
            else:
                self._submit(protocol, exchange, slot, route.handler)
            return LATER
        try:
            if route.stream_body:  # a streaming route, asked without a body
                request.body = None  # as always on such a route
                return cast("BodyConsumer", route.handler(request)).on_end()
            return route.handler(request)
        except HttpError as exc:
            return error_response(exc)
        except Exception:
            log.exception("%r: handler for %s failed", protocol, route.pattern)
            return error_response(HttpError(500, "Internal Server Error"))

    def _submit(
        self,
        protocol: HttpProtocol,
        exchange: _Exchange,
        slot: Slot,
        handler: Callable[[Request], object],
    ) -> None:
        exchange.pool_busy = True
        protocol.loop.run_in_pool(
            handler,
            slot.request,
            on_done=functools.partial(self._pool_done, protocol, exchange, slot),
        )

    def _pool_done(
        self, protocol: HttpProtocol, exchange: _Exchange, slot: Slot, future: Future[object]
    ) -> None:
        """A blocking handler finished (loop thread): fill its slot and start the next
        waiting one, unless this response closes the connection."""
        exchange.pool_busy = False
        try:
            result = future.result()
        except HttpError as exc:
            result = error_response(exc)
        except Exception as exc:
            log.error("%r: blocking handler failed", protocol, exc_info=exc)
            result = error_response(HttpError(500, "Internal Server Error"))
        queue = protocol.queue
        queue.fill(slot, result)
        if queue.ended or not slot.request.keep_alive:
            exchange.pool_waiting = None  # after a close: never run, never answered
        elif exchange.pool_waiting:
            following, handler = exchange.pool_waiting.pop(0)
            if not exchange.pool_waiting:
                exchange.pool_waiting = None
            self._submit(protocol, exchange, following, handler)


def _start_coroutine(protocol: HttpProtocol, route: Route, request: Request) -> object:
    """An ``async def`` handler: a Task on the asyncio loop that drives the reactor; its
    answer fills the request's place in the order when it completes."""
    import asyncio  # (a server without async routes never loads asyncio)

    from ioreactor.http.tasks import start_task

    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        log.error(
            "%r: %s is an async def route: run the server on ioreactor.aio's loop "
            "(ioreactor serve does)",
            protocol,
            route.pattern,
        )
        return error_response(HttpError(500, "Internal Server Error"))
    slot = protocol.queue.reserve(request)
    task = start_task(loop, _await_handler(protocol, route, slot))
    _RUNNING.add(task)  # (the loop keeps only a weak reference to a task)
    task.add_done_callback(_RUNNING.discard)
    return LATER


#: The Tasks of ``async def`` handlers still running.
_RUNNING: set[asyncio.Task[None]] = set()


async def _await_handler(protocol: HttpProtocol, route: Route, slot: Slot) -> None:
    try:
        result = await cast("Awaitable[object]", route.handler(slot.request))
    except HttpError as exc:
        result = error_response(exc)
    except Exception:
        log.exception("%r: handler for %s failed", protocol, route.pattern)
        result = error_response(HttpError(500, "Internal Server Error"))
    protocol.queue.fill(slot, result)


def _upgrade(protocol: HttpProtocol, request: Request, websocket: WebSocketHandler) -> object:
    """An Upgrade request for a WebSocket route: the handshake, the 101 and the
    hand-over to the route's handler (or the handshake's error status, and close)."""
    from ioreactor.codec.websocket_handshake import (
        HandshakeError,
        accept,
        validate_upgrade_request,
    )

    version = (1, 1) if request.version == "1.1" else (1, 0)
    try:
        upgrade = validate_upgrade_request(
            request.method, version, request.header_pairs(), request.target
        )
        websocket.on_request(protocol.conn, upgrade)
        head, agreed = accept(
            upgrade, subprotocols=websocket.subprotocols, deflate=websocket.deflate
        )
    except HandshakeError as exc:
        return Response(f"{exc}\n", exc.status, headers=exc.headers)
    websocket.adopt(protocol.conn, agreed)
    protocol.hand_over(request, head, websocket)
    return LATER


def _exchange(protocol: HttpProtocol) -> _Exchange:
    """The connection's :class:`_Exchange`, made on first use."""
    exchange = protocol.context
    if exchange is None:
        exchange = protocol.context = _Exchange()
    return cast("_Exchange", exchange)
