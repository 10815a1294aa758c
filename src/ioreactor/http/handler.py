"""The connection handler that speaks HTTP: one per server, shared by all its loops.

Data flow::

    TcpConnection --on_read / on_message--> receive_read / receive (conn.context: the
    connection's HttpProtocol) --> parser --> dispatcher (the app) --> response queue

The handler owns what a server's connections share: the :class:`Dispatcher` (an
:class:`~ioreactor.http.app.App` is run by an :class:`AppDispatcher`), the
:class:`ResponseCache`, the limits, and one :class:`ConnectionSweep` per loop.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from ioreactor.http.access_log import AccessLog
from ioreactor.http.dispatch import AppDispatcher, Dispatcher
from ioreactor.http.limits import Limits
from ioreactor.http.protocol import HttpProtocol, receive, receive_read
from ioreactor.http.response import ResponseCache
from ioreactor.http.sweep import ConnectionSweep
from ioreactor.net.handlers import Handler

try:
    import cython
except ImportError:  # the pure build runs without Cython installed
    import ioreactor._cython as cython

if TYPE_CHECKING:
    from ioreactor.http.app import App
    from ioreactor.http.observers import ResponseObserver
    from ioreactor.loop.event_loop import EventLoop
    from ioreactor.net.buffer import Buffer
    from ioreactor.net.connection import TcpConnection


class HttpHandler(Handler):
    """Gives each connection an :class:`HttpProtocol` and each loop a :class:`ConnectionSweep`.

    ``app`` is an :class:`~ioreactor.http.app.App`, or any :class:`Dispatcher` (the
    application side of another kind of server). Safe to share between the loops of a
    multi-loop server: per-connection state lives in ``conn.context`` and per-loop state
    in the sweep of that loop.
    """

    def __init__(
        self,
        app: App | Dispatcher,
        limits: Limits | None = None,
        *,
        access_log: bool = False,
        observer: ResponseObserver | None = None,
    ):
        self.dispatcher = app if isinstance(app, Dispatcher) else AppDispatcher(app)
        self.limits = limits if limits is not None else Limits()
        if observer is None and access_log:
            observer = AccessLog()
        #: Told of the responses (an access log, metrics); None: nobody asks.
        self.observer = observer
        #: What every connection's responses share (Server, Date, whole short texts).
        self.cache = ResponseCache(self.dispatcher.server_name)
        self._sweeps: dict[EventLoop, ConnectionSweep] = {}
        self._lock = threading.Lock()

    def sweep_of(self, loop: EventLoop) -> ConnectionSweep:
        """The sweep of ``loop``, started on first use (call on that loop's thread)."""
        sweep = self._sweeps.get(loop)
        if sweep is None:
            with self._lock:
                sweep = self._sweeps.get(loop)
                if sweep is None:
                    sweep = self._sweeps[loop] = ConnectionSweep(
                        loop, self.limits.sweep_interval, self.cache.tick
                    )
        return sweep

    def on_connection(self, conn: TcpConnection) -> None:
        conn.context = HttpProtocol(
            conn,
            self.dispatcher,
            self.cache,
            self.limits,
            self.sweep_of(conn.loop),
            observer=self.observer,
        )

    def on_message(self, conn: TcpConnection, buffer: Buffer) -> None:
        """Parse what ``conn.input`` holds (:func:`~ioreactor.http.protocol.receive`)."""
        receive(self, conn, buffer)

    def on_read(self, conn: TcpConnection, data: memoryview) -> int:
        """Parse a read in place (:func:`~ioreactor.http.protocol.receive_read`)."""
        return receive_read(self, conn, data)

    reads_scratch = True

    def _read_scratch(self, conn: TcpConnection, scratch: bytearray, size: int) -> int:
        return receive_read(self, conn, scratch, size)

    def on_eof(self, conn: TcpConnection) -> bool:
        protocol = conn.context
        return isinstance(protocol, HttpProtocol) and protocol.on_eof()

    def on_shutdown(self, conn: TcpConnection) -> None:
        protocol = conn.context
        if isinstance(protocol, HttpProtocol):
            protocol.shutdown()
        else:
            conn.close()

    def on_drain(self, conn: TcpConnection) -> None:
        """The server drains: the next response (or the one in flight) closes the
        connection, so the peer learns it from a response, never from a lost request."""
        protocol = conn.context
        if isinstance(protocol, HttpProtocol):
            protocol.parser.last_request()

    def on_close(self, conn: TcpConnection) -> None:
        protocol = conn.context
        if isinstance(protocol, HttpProtocol):
            protocol.on_close()

    def needs_asyncio(self) -> bool:
        """The application awaits: the serving process must drive its reactor with
        :mod:`ioreactor.aio`'s loop (``run_server`` does)."""
        return self.dispatcher.needs_asyncio()

    async def startup(self) -> None:
        """Before the server accepts (on the asyncio loop): the application's startup."""
        await self.dispatcher.startup()

    async def shutdown(self) -> None:
        """After a graceful stop (on the asyncio loop): the application's shutdown."""
        await self.dispatcher.shutdown()

    def close(self) -> None:
        """Stop every loop's sweep timer."""
        with self._lock:
            sweeps = list(self._sweeps.values())
            self._sweeps.clear()
        for sweep in sweeps:
            sweep.close()


if not cython.compiled:
    # The pure build's connection calls the module functions themselves: one Python call
    # per read instead of two (600 instructions of 38k per request, callgrind). (The
    # compiled build calls the methods in C.)
    HttpHandler.on_message = receive  # type: ignore[method-assign,assignment]
    HttpHandler.on_read = receive_read  # type: ignore[method-assign,assignment]
