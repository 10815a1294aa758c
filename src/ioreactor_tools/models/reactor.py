"""Models 3 and 4: non-blocking I/O on the framework's event loop.

Model 3 (非阻塞 IO + IO 多路复用 + 单线程) is one reactor thread that accepts and serves
every connection, on select, poll or epoll; the select variant hits FD_SETSIZE at
descriptor 1,024. Model 4 (主-从 reactor) keeps the accepting loop for accepts only and
hands each connection to one of ``workers`` sub-reactor threads for its whole life. Both
are :class:`~ioreactor.net.server.TcpServer` with a handler for the shared protocols.
"""

from __future__ import annotations

import socket

from ioreactor.echo import EchoHandler
from ioreactor.loop.backends import new_loop
from ioreactor.net.buffer import Buffer
from ioreactor.net.connection import TcpConnection
from ioreactor.net.handlers import Handler
from ioreactor.net.server import TcpServer
from ioreactor_tools.models.base import ModelOptions
from ioreactor_tools.models.handlers import HttpExchange, ProtocolName


class HttpEchoHandler(Handler):
    """The HTTP echo protocol on the reactor: one send per read, however many requests."""

    def on_connection(self, conn: TcpConnection) -> None:
        conn.context = HttpExchange()

    def on_message(self, conn: TcpConnection, buffer: Buffer) -> None:
        exchange: HttpExchange = conn.context
        data = buffer.read_all()
        if exchange.closing:
            return  # answered "Connection: close"; the rest is ignored
        exchange.feed(data)
        if exchange.out:
            conn.send(exchange.take())
        if exchange.closing:
            conn.close()  # after the queued response drains


REACTOR_HANDLERS: dict[ProtocolName, type[Handler]] = {
    "echo": EchoHandler,
    "http": HttpEchoHandler,
}


class Reactor:
    """A TcpServer on ``poller``, with ``sub_loops`` sub-reactor threads (0: one thread)."""

    def __init__(self, options: ModelOptions, poller: str, sub_loops: int) -> None:
        self._handler = REACTOR_HANDLERS[options.protocol]()
        self._poller = poller
        self._sub_loops = sub_loops
        self._loop = new_loop(poller, name="model")

    def serve(self, listener: socket.socket) -> None:
        listener.setblocking(False)
        server = TcpServer(
            self._loop,
            listener.getsockname(),
            self._handler,
            listener=listener,
            loops=self._sub_loops,
            poller=self._poller,
            name="model",
        )
        server.start()
        try:
            self._loop.run()
        finally:
            server.close()
            self._loop.close()

    def stop(self) -> None:
        self._loop.stop()
