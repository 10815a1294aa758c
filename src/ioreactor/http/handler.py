"""The connection handler that speaks HTTP: one per server, shared by all its loops."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from ioreactor.http.date import DATE
from ioreactor.http.headers import encode_field
from ioreactor.http.limits import Limits
from ioreactor.http.protocol import HttpProtocol
from ioreactor.http.response import TEXT_FIELD
from ioreactor.http.sweep import ConnectionSweep
from ioreactor.net.handler import Handler

if TYPE_CHECKING:
    from ioreactor.http.app import App
    from ioreactor.loop.event_loop import EventLoop
    from ioreactor.net.buffer import Buffer
    from ioreactor.net.connection import TcpConnection


class HttpHandler(Handler):
    """Gives each connection an :class:`HttpProtocol` and each loop a :class:`ConnectionSweep`.

    Safe to share between the loops of a multi-loop server: per-connection state lives in
    ``conn.context`` and per-loop state in the sweep of that loop.
    """

    def __init__(self, app: App, limits: Limits | None = None, *, access_log: bool = False):
        self.app = app
        self.router = app.router
        self.limits = limits if limits is not None else Limits()
        self.access_log = access_log
        self.server_line = encode_field("Server", app.server_name)
        #: ``200 OK`` head of a text response up to the Content-Length value, for the
        #: current Date (rebuilt by :meth:`tick` when the second changes).
        self.text_prefix = b""
        self._prefix_date = b""
        self.tick()
        self._sweeps: dict[EventLoop, ConnectionSweep] = {}
        self._lock = threading.Lock()

    def tick(self) -> None:
        """Refresh the cached Date (and what is built from it); the sweeps call this."""
        DATE.refresh()
        line = DATE.line
        if line is not self._prefix_date:
            self._prefix_date = line
            self.text_prefix = b"HTTP/1.1 200 OK\r\n%s%s%sContent-Length: " % (
                self.server_line,
                line,
                TEXT_FIELD,
            )

    def sweep_of(self, loop: EventLoop) -> ConnectionSweep:
        """The sweep of ``loop``, started on first use (call on that loop's thread)."""
        sweep = self._sweeps.get(loop)
        if sweep is None:
            with self._lock:
                sweep = self._sweeps.get(loop)
                if sweep is None:
                    sweep = self._sweeps[loop] = ConnectionSweep(
                        loop, self.limits.sweep_interval, self.tick
                    )
        return sweep

    def on_connection(self, conn: TcpConnection) -> None:
        protocol = HttpProtocol(conn, self)
        conn.context = protocol
        self.sweep_of(conn.loop).protocols.add(protocol)

    def on_message(self, conn: TcpConnection, buffer: Buffer) -> None:
        conn.context.feed(buffer)

    def on_eof(self, conn: TcpConnection) -> bool:
        protocol = conn.context
        return isinstance(protocol, HttpProtocol) and protocol.on_eof()

    def on_shutdown(self, conn: TcpConnection) -> None:
        protocol = conn.context
        if isinstance(protocol, HttpProtocol):
            protocol.shutdown()
        else:
            conn.close()

    def on_close(self, conn: TcpConnection) -> None:
        protocol = conn.context
        if isinstance(protocol, HttpProtocol):
            protocol.on_close()
            sweep = self._sweeps.get(conn.loop)
            if sweep is not None:
                sweep.protocols.discard(protocol)

    def close(self) -> None:
        """Stop every loop's sweep timer."""
        with self._lock:
            sweeps = list(self._sweeps.values())
            self._sweeps.clear()
        for sweep in sweeps:
            sweep.close()
