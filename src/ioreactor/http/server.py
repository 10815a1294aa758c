"""HttpServer: a TcpServer whose handler speaks HTTP/1.1, with graceful shutdown."""

from __future__ import annotations

import socket
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ioreactor.http.handler import HttpHandler
from ioreactor.http.limits import Limits
from ioreactor.net.acceptor import BACKLOG
from ioreactor.net.address import Address
from ioreactor.net.server import Balance, TcpServer

if TYPE_CHECKING:
    from ioreactor.http.app import App
    from ioreactor.http.dispatch import Dispatcher
    from ioreactor.loop.event_loop import EventLoop

#: Seconds a graceful shutdown waits for in-flight requests before closing the rest.
SHUTDOWN_GRACE = 10.0


def _handler_for(app: App | Dispatcher, limits: Limits | None, access_log: bool) -> HttpHandler:
    """The connection handler for ``app``: an ASGI dispatcher's own (its sends wait for
    drains and hear of half-closes), else the native one."""
    asgi = sys.modules.get("ioreactor.http.asgi.dispatcher")  # (never imported: not ASGI)
    if asgi is not None and isinstance(app, asgi.AsgiDispatcher):
        from ioreactor.http.asgi.handler import AsgiHandler

        return AsgiHandler(app, limits, access_log=access_log)
    return HttpHandler(app, limits, access_log=access_log)


class HttpServer:
    """Serves ``app`` on ``address`` from ``loop`` (and ``loops`` sub-reactor threads).

    ``app`` is an :class:`~ioreactor.http.app.App` or another
    :class:`~ioreactor.http.dispatch.Dispatcher` (an ASGI application's
    :class:`~ioreactor.http.asgi.AsgiDispatcher`, on a loop driven by ioreactor.aio).
    """

    def __init__(
        self,
        loop: EventLoop,
        address: str | Address | tuple[str, int],
        app: App | Dispatcher,
        *,
        limits: Limits | None = None,
        access_log: bool = False,
        backlog: int = BACKLOG,
        reuse_port: bool = False,
        listener: socket.socket | None = None,
        loops: int = 0,
        balance: Balance = "round-robin",
    ) -> None:
        self.loop = loop
        self.app = app
        self.handler = _handler_for(app, limits, access_log)
        self.tcp = TcpServer(
            loop,
            address,
            self.handler,
            backlog=backlog,
            reuse_port=reuse_port,
            listener=listener,
            loops=loops,
            balance=balance,
        )

    def __repr__(self) -> str:
        return f"<HttpServer {self.tcp.address} conns={self.tcp.connection_count}>"

    def start(self) -> HttpServer:
        self.tcp.start()
        return self

    @property
    def sockname(self) -> Any:
        return self.tcp.sockname

    @property
    def port(self) -> int:
        return self.tcp.port

    @property
    def limits(self) -> Limits:
        return self.handler.limits

    def shutdown(
        self, grace: float = SHUTDOWN_GRACE, on_done: Callable[[], object] | None = None
    ) -> None:
        """Stop accepting, let in-flight requests finish, close idle keep-alive connections.

        Whatever is still open after ``grace`` seconds is closed; then ``on_done()`` runs
        on the accepting loop. Any thread.
        """
        self.tcp.shutdown(grace, on_done)

    def close(self) -> None:
        """Stop accepting and close every connection now (accepting loop's thread)."""
        self.tcp.close()
        self.handler.close()
