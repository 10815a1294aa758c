"""The connection handler of an ASGI server: the native HTTP handler, plus the wake-up
of the application's ``send()`` calls that wait for the output to drain.

Data flow::

    TcpConnection --on_read / on_message--> HttpHandler (parser, queue, lifecycle)
        --> AsgiDispatcher --> the application's Tasks
    TcpConnection --on_write_complete--> AsgiHandler: the sends waiting for a drain
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ioreactor.http.asgi.dispatcher import AsgiConnection
from ioreactor.http.handler import HttpHandler
from ioreactor.http.metrics import MeteredHttpHandler
from ioreactor.http.protocol import HttpProtocol

if TYPE_CHECKING:
    from ioreactor.net.connection import TcpConnection


class AsgiHandler(HttpHandler):
    """Serves an :class:`AsgiDispatcher` (one per serving process; wrapped by the
    forwarding or metrics dispatchers or not)."""

    def on_eof(self, conn: TcpConnection) -> bool:
        """The client half-closed: its requests in flight learn it (http.disconnect
        from receive()); their responses may still go out."""
        keep_open = super().on_eof(conn)
        protocol = conn.context
        if isinstance(protocol, HttpProtocol):
            connection = protocol.context
            if isinstance(connection, AsgiConnection):
                for cycle in connection.cycles:
                    cycle.peer_eof()
        return keep_open

    def on_write_complete(self, conn: TcpConnection) -> None:
        protocol = conn.context
        if isinstance(protocol, HttpProtocol):
            connection = protocol.context
            if isinstance(connection, AsgiConnection) and connection.drain_waiters:
                connection.wake_drained()


class MeteredAsgiHandler(AsgiHandler, MeteredHttpHandler):
    """:class:`AsgiHandler` that counts back-pressure pauses (``--metrics-listen``)."""
