"""TcpServer: a listening socket, an acceptor, and the connections it creates.

Single reactor here: the loop that accepts also owns every connection. Each accepted
socket gets TCP_NODELAY (on by default: the loop already coalesces writes, so Nagle
would only add latency) and the configured keepalive timers.
"""

from __future__ import annotations

import logging
import socket
from typing import TYPE_CHECKING, Any

from ioreactor.net.acceptor import ACCEPT_BATCH, BACKLOG, Acceptor, open_listener
from ioreactor.net.address import Address, to_address
from ioreactor.net.connection import HIGH_WATER_MARK, LOW_WATER_MARK, TcpConnection
from ioreactor.net.handler import Handler
from ioreactor.net.sockopt import KeepAlive, is_tcp, set_keepalive

if TYPE_CHECKING:
    from ioreactor.loop.event_loop import EventLoop

log = logging.getLogger("ioreactor.server")


class TcpServer:
    """Accepts connections on ``address`` and drives them with ``handler``."""

    def __init__(
        self,
        loop: EventLoop,
        address: str | Address | tuple[str, int],
        handler: Handler,
        *,
        backlog: int = BACKLOG,
        reuse_port: bool = False,
        nodelay: bool = True,
        keepalive: KeepAlive | None = None,
        high_water_mark: int = HIGH_WATER_MARK,
        low_water_mark: int = LOW_WATER_MARK,
        accept_batch: int = ACCEPT_BATCH,
        listener: socket.socket | None = None,
    ) -> None:
        self.loop = loop
        self.address = to_address(address)
        self.handler = handler
        self.backlog = backlog
        self.reuse_port = reuse_port
        self.nodelay = nodelay
        self.keepalive = keepalive
        self.high_water_mark = high_water_mark
        self.low_water_mark = low_water_mark
        self.accept_batch = accept_batch
        self.connections: set[TcpConnection] = set()
        self._listener = listener
        self._acceptor: Acceptor | None = None

    def __repr__(self) -> str:
        return f"<TcpServer {self.address} conns={len(self.connections)}>"

    @property
    def sockname(self) -> Any:
        """The bound address (useful after binding port 0)."""
        if self._acceptor is None:
            raise RuntimeError("server is not started")
        return self._acceptor.listener.getsockname()

    @property
    def port(self) -> int:
        port: int = self.sockname[1]
        return port

    def start(self) -> TcpServer:
        """Bind, listen and start accepting on the loop (call before or from the loop)."""
        if self._acceptor is not None:
            return self
        listener = self._listener or open_listener(
            self.address.family,
            self.address.sockaddr,
            backlog=self.backlog,
            reuse_port=self.reuse_port,
        )
        self._acceptor = Acceptor(self.loop, listener, self._on_accept, batch=self.accept_batch)
        self._acceptor.start()
        log.debug("%r listening on %s", self, listener.getsockname())
        return self

    def _on_accept(self, sock: socket.socket, peer: Any) -> None:
        try:
            if is_tcp(sock):
                if self.nodelay:
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                if self.keepalive is not None:
                    set_keepalive(sock, self.keepalive)
        except OSError as exc:  # the peer already reset it
            log.debug("dropping %s before start: %s", peer, exc)
            sock.close()
            return
        conn = TcpConnection(
            self.loop,
            sock,
            peer,
            self.handler,
            self,
            high_water_mark=self.high_water_mark,
            low_water_mark=self.low_water_mark,
        )
        self.connections.add(conn)
        conn.start()

    def _connection_closed(self, conn: TcpConnection) -> None:
        self.connections.discard(conn)

    def stop_accepting(self) -> None:
        """Close the listening socket; established connections go on."""
        if self._acceptor is not None:
            self._acceptor.close()

    def close(self) -> None:
        """Stop accepting and force-close every connection (loop thread)."""
        self.stop_accepting()
        for conn in list(self.connections):
            conn.force_close()
