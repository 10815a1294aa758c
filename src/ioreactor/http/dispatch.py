"""The application side of an HTTP connection: what runs the requests the parser made.

Data flow::

    RequestParser events --HttpProtocol, after feed_data returned--> Dispatcher
        request(protocol, request) / body(protocol, chunk) / end(protocol)
        --> the application --> protocol.queue.respond / reserve + fill

:class:`Dispatcher` is the seam between the wire and the application. The parser, the
response queue, the connection's lifecycle and the rendering are the same for every
application; only the dispatcher changes: :class:`AppDispatcher` runs the native
:class:`~ioreactor.http.app.App` (routing, loop or worker pool, streamed bodies), and an
ASGI or WSGI server will be another dispatcher (the application call) over the same
protocol. A dispatcher never runs inside a parser callback: the connection calls it once
``feed_data`` has returned, with the events of that feed in order. Per-connection state a
dispatcher needs lives in ``protocol.context`` (as a handler's lives in ``conn.context``).

:class:`AppDispatcher`, per request: a literal route that runs on the loop and takes the
whole body is found with two dict lookups (``Router.plain``); anything else is resolved
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
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import TYPE_CHECKING, cast

from ioreactor.http.errors import HttpError
from ioreactor.http.response import error_response

if TYPE_CHECKING:
    from concurrent.futures import Future

    from ioreactor.http.app import App
    from ioreactor.http.protocol import HttpProtocol
    from ioreactor.http.request import BodyConsumer, Request
    from ioreactor.http.response_queue import Slot
    from ioreactor.http.router import Route

log = logging.getLogger("ioreactor.http")


class Dispatcher(ABC):
    """Runs an application for the requests of every connection of a server.

    One object serves every connection (like a :class:`~ioreactor.net.handler.Handler`);
    each call gets the connection's :class:`~ioreactor.http.protocol.HttpProtocol`,
    whose ``queue`` takes the answers (``respond``; ``reserve`` and ``fill`` for one
    that comes later, in order all the same), whose ``context`` holds the dispatcher's
    per-connection state, and whose ``hand_over`` gives the connection to another
    protocol after a response (a WebSocket after ``101 Switching Protocols``). All calls
    run on the connection's loop thread, in request order.
    """

    #: The name the server gives in its ``Server`` field.
    server_name: str = "ioreactor"

    @abstractmethod
    def request(self, protocol: HttpProtocol, request: Request) -> None:
        """A request: complete (``request.body`` is bytes), or its head with its body
        still to come (``request.body is None``: :meth:`body` calls follow, then
        :meth:`end`)."""

    @abstractmethod
    def body(self, protocol: HttpProtocol, chunk: bytes) -> None:
        """A piece of the body of the request whose head came last (chunked coding
        removed; ``Limits.max_body`` already enforced)."""

    @abstractmethod
    def end(self, protocol: HttpProtocol) -> None:
        """The body of the request whose head came last is complete."""


class _Exchange:
    """:class:`AppDispatcher`'s state on one connection (``protocol.context``), made on
    the first request that has a body or runs in the pool."""

    __slots__ = ("chunks", "consumer", "failure", "pool_busy", "pool_waiting", "request", "route")

    def __init__(self) -> None:
        #: The request whose body is arriving, and its route (None: 404/405 in failure).
        self.request: Request | None = None
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

    def __init__(self, app: App) -> None:
        self.app = app
        self.router = app.router
        self.server_name = app.server_name
        self.plain = app.router.plain

    def __repr__(self) -> str:
        return f"<AppDispatcher {len(self.router.routes())} routes>"

    def request(self, protocol: HttpProtocol, request: Request) -> None:
        routes = self.plain.get(request.path)
        route = routes.get(request.method) if routes is not None else None
        if route is None or request.body is None:
            self._route(protocol, request)
            return
        try:
            result = route.handler(request)
        except HttpError as exc:
            result = error_response(exc)
        except Exception:
            log.exception("%r: handler for %s failed", protocol, route.pattern)
            result = error_response(HttpError(500, "Internal Server Error"))
        protocol.queue.respond(request, result)

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

    def end(self, protocol: HttpProtocol) -> None:
        exchange = _exchange(protocol)
        request = exchange.request
        route = exchange.route
        chunks = exchange.chunks
        consumer = exchange.consumer
        failure = exchange.failure
        exchange.request = exchange.route = exchange.chunks = None
        exchange.consumer = exchange.failure = None
        if request is None:  # pragma: no cover - the parser ends only a begun body
            return
        if failure is not None:
            protocol.queue.respond(request, error_response(failure))
            return
        assert route is not None  # (a request without one has its failure)
        if consumer is not None:
            try:
                result = consumer.on_end()
            except HttpError as exc:
                result = error_response(exc)
            except Exception:
                log.exception("%r: body consumer for %s failed", protocol, route.pattern)
                result = error_response(HttpError(500, "Internal Server Error"))
            protocol.queue.respond(request, result)
        else:
            if chunks:
                request.body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
            else:
                request.body = b""
            self._run(protocol, route, request)

    def _route(self, protocol: HttpProtocol, request: Request) -> None:
        """A request the plain table does not answer: path parameters, HEAD, 404/405,
        handlers that run in the pool or take the body as a stream, heads of bodies."""
        route: Route | None
        try:
            route, request.params = self.router.resolve(request.method, request.path)
        except HttpError as exc:
            if request.body is not None:
                protocol.queue.respond(request, error_response(exc))
                return
            route = None
            failure: HttpError | None = exc.with_traceback(None)
        else:
            failure = None
        if request.body is not None:  # complete: no body, or none to wait for
            assert route is not None
            self._run(protocol, route, request)
            return
        exchange = _exchange(protocol)
        exchange.request = request
        exchange.route = route
        exchange.failure = failure
        if route is None:
            return  # the body is read and dropped; its end answers 404/405
        if not route.stream_body:
            exchange.chunks = []
            return
        try:
            exchange.consumer = cast("BodyConsumer", route.handler(request))
        except HttpError as exc:
            exchange.failure = exc.with_traceback(None)
        except Exception:
            log.exception("%r: handler for %s failed", protocol, route.pattern)
            exchange.failure = HttpError(500, "Internal Server Error")

    def _run(self, protocol: HttpProtocol, route: Route, request: Request) -> None:
        """A complete request: its handler, on the loop or in the pool."""
        if route.blocking:
            queue = protocol.queue
            slot = queue.reserve(request)
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
            return
        if route.stream_body:  # a streaming route, asked without a body
            request.body = None  # as always on such a route
            try:
                result = cast("BodyConsumer", route.handler(request)).on_end()
            except HttpError as exc:
                result = error_response(exc)
            except Exception:
                log.exception("%r: handler for %s failed", protocol, route.pattern)
                result = error_response(HttpError(500, "Internal Server Error"))
            protocol.queue.respond(request, result)
            return
        try:
            result = route.handler(request)
        except HttpError as exc:
            result = error_response(exc)
        except Exception:
            log.exception("%r: handler for %s failed", protocol, route.pattern)
            result = error_response(HttpError(500, "Internal Server Error"))
        protocol.queue.respond(request, result)

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


def _exchange(protocol: HttpProtocol) -> _Exchange:
    """The connection's :class:`_Exchange`, made on first use."""
    exchange = protocol.context
    if exchange is None:
        exchange = protocol.context = _Exchange()
    return cast("_Exchange", exchange)
