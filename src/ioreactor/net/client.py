"""TcpClient: a Connector plus the connection it yields, optionally reconnecting.

With ``ssl=`` the connection speaks TLS (:mod:`ioreactor.net.tls`): the handler hears of
it once the handshake has completed; a handshake that fails (the server's certificate
does not verify, the handshake times out) counts as a failed connect
(``on_connect_failed``). Each established session is kept to resume the next connection
(a reconnect costs an abbreviated handshake).
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ioreactor.net.address import Address, to_address
from ioreactor.net.channels import connection_class, tls_connection_class
from ioreactor.net.connection import HIGH_WATER_MARK, LOW_WATER_MARK, TcpConnection
from ioreactor.net.connector import BACKOFF_INITIAL, BACKOFF_MAX, CONNECT_TIMEOUT, Connector
from ioreactor.net.handlers import Handler
from ioreactor.net.sockopt import KeepAlive, is_tcp, set_keepalive
from ioreactor.net.tls import HANDSHAKE_TIMEOUT, TlsLayer

if TYPE_CHECKING:
    from ssl import SSLContext, SSLSession

    from ioreactor.loop.event_loop import EventLoop

log = logging.getLogger("ioreactor.client")


class TcpClient:
    """Connects to ``address`` and drives the connection with ``handler``.

    ``retry``: keep trying (with back-off) while the first connect fails.
    ``reconnect``: after an established connection closes, connect again.
    ``ssl``: speak TLS with this client context; ``server_hostname``: the name to ask
    for (SNI) and to check the certificate against (default: the address's host).
    """

    def __init__(
        self,
        loop: EventLoop,
        address: str | Address | tuple[str, int],
        handler: Handler,
        *,
        retry: bool = True,
        reconnect: bool = False,
        max_attempts: int | None = None,
        timeout: float = CONNECT_TIMEOUT,
        backoff_initial: float = BACKOFF_INITIAL,
        backoff_max: float = BACKOFF_MAX,
        nodelay: bool = True,
        keepalive: KeepAlive | None = None,
        high_water_mark: int = HIGH_WATER_MARK,
        low_water_mark: int = LOW_WATER_MARK,
        on_connect_failed: Callable[[OSError], None] | None = None,
        ssl: SSLContext | None = None,
        server_hostname: str | None = None,
        ssl_handshake_timeout: float | None = HANDSHAKE_TIMEOUT,
    ) -> None:
        self.loop = loop
        self.address = to_address(address)
        #: The TLS settings and counters (None: plain TCP).
        self.tls: TlsLayer | None = None
        if ssl is not None:
            self.tls = TlsLayer(ssl, server_side=False, handshake_timeout=ssl_handshake_timeout)
            if server_hostname is None and not self.address.is_unix:
                server_hostname = self.address.host
            if ssl.check_hostname and not server_hostname:
                raise ValueError("a TLS client that checks the hostname needs server_hostname")
        self.server_hostname = server_hostname
        #: The last established TLS session: the next connection resumes it.
        self.tls_session: SSLSession | None = None
        self.handler = handler
        self.reconnect = reconnect
        self.nodelay = nodelay
        self.keepalive = keepalive
        self.high_water_mark = high_water_mark
        self.low_water_mark = low_water_mark
        self.on_connect_failed = on_connect_failed
        self.connection: TcpConnection | None = None
        self.connections_made = 0
        self.connector = Connector(
            loop,
            self.address,
            self._on_connected,
            self._on_failed,
            timeout=timeout,
            retry=retry,
            max_attempts=max_attempts,
            backoff_initial=backoff_initial,
            backoff_max=backoff_max,
        )
        self._stopped = False

    def connect(self) -> TcpClient:
        """Start connecting (thread-safe)."""
        self._stopped = False
        self.loop.run_in_loop(self.connector.start)
        return self

    def _on_connected(self, sock: socket.socket, peer: Any) -> None:
        if self._stopped:
            # stop()/close() came from another thread while this connect completed: the
            # loop ran the connect's event before the queued stop. Abandon it.
            sock.close()
            return
        if is_tcp(sock):
            if self.nodelay:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.keepalive is not None:
                set_keepalive(sock, self.keepalive)
        conn: TcpConnection
        if self.tls is None:
            conn = connection_class(self.loop)(
                self.loop,
                sock,
                peer,
                self.handler,
                self,
                high_water_mark=self.high_water_mark,
                low_water_mark=self.low_water_mark,
            )
        else:
            conn = tls_connection_class(self.loop)(
                self.loop,
                sock,
                peer,
                self.handler,
                self,
                tls=self.tls,
                server_hostname=self.server_hostname,
                session=self.tls_session,
                high_water_mark=self.high_water_mark,
                low_water_mark=self.low_water_mark,
            )
        self.connection = conn
        self.connections_made += 1
        conn.start()

    def _on_failed(self, exc: OSError) -> None:
        if self.on_connect_failed is not None:
            self.on_connect_failed(exc)
        else:
            log.error("connect to %s failed: %s", self.address, exc)

    def connection_closed(self, conn: TcpConnection) -> None:
        """The connection ended (as its ``ConnectionOwner``): reconnect if asked to."""
        if self.connection is conn:
            self.connection = None
        tls = conn.tls
        if tls is not None:
            if tls.established:
                self.tls_session = tls.session
            elif isinstance(conn.error, OSError) and self.on_connect_failed is not None:
                self.on_connect_failed(conn.error)  # the handshake failed (logged by TLS)
        if self.reconnect and not self._stopped:
            delay = self.connector.next_delay()
            log.info("connection to %s closed; reconnecting in %.2f s", self.address, delay)
            self.loop.call_later(delay, self._reconnect)

    def _reconnect(self) -> None:
        if not self._stopped and self.connection is None:
            self.connector.start()

    def stop(self) -> None:
        """Stop connecting and reconnecting; an established connection stays (thread-safe)."""
        self._stopped = True
        self.loop.run_in_loop(self.connector.stop)

    def close(self) -> None:
        """Stop reconnecting and close the connection gracefully (thread-safe)."""
        self._stopped = True
        self.loop.run_in_loop(self._close_in_loop)

    def _close_in_loop(self) -> None:
        self.connector.stop()
        conn = self.connection
        if conn is not None:
            conn.close()
