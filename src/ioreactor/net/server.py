"""TcpServer: a listening socket, an acceptor, and the connections it creates.

Two shapes, muduo's TcpServer with and without ``setThreadNum``::

    loops=0 (single reactor)          loops=N (main-sub reactor)

    loop: accept -> connection        main loop: accept -> pick sub-loop i
          read/write every conn                   sub_i.run_in_loop(new_connection)
                                      sub-loop i (own thread): owns the connection
                                                  for its whole life

A socket crosses threads exactly once, through the target loop's queue and wakeup; the
sub-loop then registers it with its own poller. Each loop keeps its own set of
connections (a :class:`LoopConnections`), touched only by that loop's thread, so closing
a connection needs no lock; :attr:`TcpServer.connections` is a snapshot across them.

Each accepted socket gets TCP_NODELAY (on by default: the loop already coalesces writes,
so Nagle would only add latency) and the configured keepalive timers.

TLS (``ssl=``): every connection is a :class:`~ioreactor.net.tls.TlsConnection` (or its
io_uring twin) sharing the server's :class:`~ioreactor.net.tls.TlsLayer` (its context,
handshake timeout and counters: :attr:`TcpServer.tls`). The handler is the same; it
hears of a connection once its handshake has completed.

Graceful shutdown (:meth:`TcpServer.shutdown`): stop accepting at once, give every
connection ``handler.on_shutdown(conn)`` on its own loop (the default closes after its
output drains), and force-close what is left when the timeout expires. Before it, a
server may drain (:meth:`TcpServer.drain`): every connection, and each one accepted
from then on, gets ``on_drain`` (HTTP: its next response closes it) while serving goes
on.
"""

from __future__ import annotations

import logging
import socket
import zlib
from collections.abc import Callable
from ssl import SSLContext
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

from ioreactor.net.acceptor import ACCEPT_BATCH, BACKLOG, Acceptor, open_listener
from ioreactor.net.address import Address, to_address
from ioreactor.net.channels import acceptor_class, connection_class, tls_connection_class
from ioreactor.net.connection import HIGH_WATER_MARK, LOW_WATER_MARK, TcpConnection
from ioreactor.net.handlers import Handler
from ioreactor.net.loop_thread import EventLoopThreadPool, LoopFactory
from ioreactor.net.sockopt import KeepAlive, is_tcp, set_keepalive
from ioreactor.net.tls import HANDSHAKE_TIMEOUT, TlsLayer

if TYPE_CHECKING:
    from ioreactor.loop.event_loop import EventLoop
    from ioreactor.loop.timers import TimerHandle

log = logging.getLogger("ioreactor.server")

Balance = Literal["round-robin", "least-connections", "hash"]
#: How a new connection picks its sub-loop: in turn, the one with the fewest
#: connections, or by a hash of the peer's host (all connections of one client host
#: share a loop).
BALANCES: tuple[Balance, ...] = ("round-robin", "least-connections", "hash")
#: Default time :meth:`TcpServer.shutdown` lets connections finish before force-closing.
SHUTDOWN_TIMEOUT = 30.0
#: After the force-close at the timeout, how long to wait for stuck loops to confirm.
FORCE_CLOSE_GRACE = 2.0


class ServerStats(NamedTuple):
    """A server's connection counts since it started (any thread; a snapshot)."""

    accepted: int
    closed: int
    open: int
    #: Connections accepted and closed at once for lack of fds (EMFILE).
    shed: int


def peer_hash(peer: Any) -> int:
    """A stable hash of the peer's host (not its port): the affinity key."""
    host = peer[0] if isinstance(peer, tuple) and peer else peer
    return zlib.crc32(str(host).encode())


class LoopConnections:
    """The connections one loop owns; read and written only by that loop's thread.

    It is each connection's owner: a closing connection removes itself here, on its own
    loop, with no lock. ``accepted`` is written by the accepting thread and ``closed``
    by this loop's thread, so ``accepted - closed`` is a race-free load estimate that
    also counts sockets still in flight to the loop.
    """

    __slots__ = ("accepted", "closed", "conns", "draining", "loop", "saying_goodbye", "server")

    def __init__(self, server: TcpServer, loop: EventLoop) -> None:
        self.server = server
        self.loop = loop
        self.conns: set[TcpConnection] = set()
        self.accepted = 0
        self.closed = 0
        self.saying_goodbye = False
        self.draining = False

    def __repr__(self) -> str:
        return f"<LoopConnections {self.loop.name} conns={len(self.conns)}>"

    def connection_closed(self, conn: TcpConnection) -> None:
        """A connection of this loop ended (as its ``ConnectionOwner``): forget it."""
        conns = self.conns
        conns.discard(conn)
        self.closed += 1
        if not conns and self.saying_goodbye:
            self.server.loop.run_in_loop(self.server._loop_drained, self)

    def say_goodbye(self) -> None:
        """Shutdown, on this loop: ``on_shutdown`` for each connection (loop thread)."""
        self.saying_goodbye = True
        if not self.conns:
            self.server.loop.run_in_loop(self.server._loop_drained, self)
            return
        for conn in list(self.conns):
            try:
                # The connection's own handler: it may have been handed on (an HTTP
                # connection switched to WebSocket says goodbye with a close frame).
                conn.handler.on_shutdown(conn)
            except Exception:
                log.exception("handler on_shutdown failed for %r; closing it now", conn)
                conn.force_close()

    def drain(self) -> None:
        """``on_drain`` for each connection of this loop, now and when accepted (loop thread)."""
        self.draining = True
        for conn in list(self.conns):
            drain_connection(conn)

    def force_close_all(self) -> None:
        for conn in list(self.conns):
            conn.force_close()


class TcpServer:
    """Accepts connections on ``address`` and drives them with ``handler``.

    ``loops``: number of sub-reactor threads (0: this loop does everything).
    ``balance``: how a connection picks its sub-loop (see :data:`BALANCES`).
    ``poller``: backend of the sub-loops (default: the same as ``loop``'s);
    ``loop_factory(name=...)`` builds them instead when the loop class needs it.

    ``ssl``: serve TLS with this server context -- or with the context a function
    returns, called here (a worker process that builds its server loads its own).
    ``ssl_handshake_timeout``: seconds a handshake may take (None: no limit).
    ``ssl_plaintext_reply``: bytes answered in plaintext to an HTTP request sent to the
    TLS port (None: close without a word).
    """

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
        loops: int = 0,
        balance: Balance = "round-robin",
        poller: str | None = None,
        loop_factory: LoopFactory | None = None,
        name: str = "server",
        ssl: SSLContext | Callable[[], SSLContext] | None = None,
        ssl_handshake_timeout: float | None = HANDSHAKE_TIMEOUT,
        ssl_plaintext_reply: bytes | None = None,
    ) -> None:
        if loops < 0:
            raise ValueError(f"loops must be >= 0, got {loops}")
        if balance not in BALANCES:
            raise ValueError(f"balance must be one of {', '.join(BALANCES)}, got {balance!r}")
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
        self.num_loops = loops
        self.balance = balance
        self.name = name
        #: The TLS settings and counters of every connection (None: plain TCP).
        self.tls: TlsLayer | None = None
        if ssl is not None:
            context = ssl if isinstance(ssl, SSLContext) else ssl()
            self.tls = TlsLayer(
                context,
                server_side=True,
                handshake_timeout=ssl_handshake_timeout,
                plaintext_reply=ssl_plaintext_reply,
            )
        self._pool = EventLoopThreadPool(
            loop, loops, name=f"{name}-io", poller=poller, loop_factory=loop_factory
        )
        self._owners: list[LoopConnections] = [LoopConnections(self, loop)]
        self._next_owner = 0
        self._listener = listener
        self._acceptor: Acceptor | None = None
        self._started = False
        self._shutting_down = False
        self._shutdown_pending: set[LoopConnections] = set()
        self._shutdown_timer: TimerHandle | None = None
        self._shutdown_callbacks: list[Callable[[], object]] = []
        self._shutdown_finished = False

    def __repr__(self) -> str:
        return f"<TcpServer {self.address} loops={self.num_loops} conns={self.connection_count}>"

    # -- introspection ----------------------------------------------------------------

    @property
    def sockname(self) -> Any:
        """The bound address (useful after binding port 0)."""
        if self._acceptor is None:
            raise RuntimeError("server is not listening")
        return self._acceptor.listener.getsockname()

    @property
    def listening(self) -> bool:
        """Whether it accepts on a listener of its own (not only adopted sockets)."""
        return self._acceptor is not None

    @property
    def port(self) -> int:
        port: int = self.sockname[1]
        return port

    @property
    def io_loops(self) -> list[EventLoop]:
        """The loops that own connections: the sub-loops, or the accepting loop."""
        return [owner.loop for owner in self._owners]

    @property
    def connections(self) -> set[TcpConnection]:
        """A snapshot of the open connections across every loop (any thread)."""
        if len(self._owners) == 1:
            return set(self._owners[0].conns)
        snapshot: set[TcpConnection] = set()
        for owner in self._owners:
            snapshot |= owner.conns.copy()  # one C-level copy: atomic under the GIL
        return snapshot

    @property
    def connection_count(self) -> int:
        return sum(len(owner.conns) for owner in self._owners)

    def stats(self) -> ServerStats:
        """Connections accepted, closed, open and shed so far."""
        owners = self._owners
        shed = self._acceptor.rejected_for_fds if self._acceptor is not None else 0
        return ServerStats(
            sum(o.accepted for o in owners),
            sum(o.closed for o in owners),
            sum(len(o.conns) for o in owners),
            shed,
        )

    @property
    def shutting_down(self) -> bool:
        return self._shutting_down

    # -- starting and accepting ---------------------------------------------------------

    def start(self, *, listen: bool = True) -> TcpServer:
        """Start the sub-loops, then bind, listen and accept on the loop.

        ``listen=False`` serves only sockets handed in with :meth:`adopt` (fd passing).
        """
        if self._started:
            return self
        listener = None
        if listen:
            # Bind first: if that fails, nothing has started and start() may be retried.
            listener = self._listener or open_listener(
                self.address.family,
                self.address.sockaddr,
                backlog=self.backlog,
                reuse_port=self.reuse_port,
            )
        self._started = True
        if self.num_loops:
            self._pool.start()
            self._owners = [LoopConnections(self, sub) for sub in self._pool.loops]
        if listener is not None:
            make = acceptor_class(self.loop)
            self._acceptor = make(self.loop, listener, self._on_accept, batch=self.accept_batch)
            self._acceptor.start()
            log.debug("%r listening on %s", self, listener.getsockname())
        return self

    def adopt(self, sock: socket.socket, peer: Any = None) -> None:
        """Serve a connected socket accepted elsewhere (fd passing); accepting loop only."""
        if peer is None:
            try:
                peer = sock.getpeername()
            except OSError as exc:  # reset before we got to it
                log.debug("dropping a handed-over socket: %s", exc)
                sock.close()
                return
        self._on_accept(sock, peer)

    def _pick_owner(self, peer: Any) -> LoopConnections:
        owners = self._owners
        if len(owners) == 1:
            return owners[0]
        if self.balance == "round-robin":
            i = self._next_owner
            self._next_owner = (i + 1) % len(owners)
            return owners[i]
        if self.balance == "least-connections":
            return min(owners, key=_owner_load)
        return owners[peer_hash(peer) % len(owners)]

    def _on_accept(self, sock: socket.socket, peer: Any) -> None:
        owner = self._pick_owner(peer)
        owner.accepted += 1
        if owner.loop is self.loop:
            self._new_connection(owner, sock, peer)
        else:
            owner.loop.call_soon_threadsafe(self._new_connection, owner, sock, peer)

    def _new_connection(self, owner: LoopConnections, sock: socket.socket, peer: Any) -> None:
        """Runs on the owning loop's thread: configure, register, announce."""
        try:
            if is_tcp(sock):
                if self.nodelay:
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                if self.keepalive is not None:
                    set_keepalive(sock, self.keepalive)
        except OSError as exc:  # the peer already reset it
            log.debug("dropping %s before start: %s", peer, exc)
            sock.close()
            owner.closed += 1
            return
        conn: TcpConnection
        if self.tls is None:
            conn = connection_class(owner.loop)(
                owner.loop,
                sock,
                peer,
                self.handler,
                owner,
                high_water_mark=self.high_water_mark,
                low_water_mark=self.low_water_mark,
            )
        else:
            conn = tls_connection_class(owner.loop)(
                owner.loop,
                sock,
                peer,
                self.handler,
                owner,
                tls=self.tls,
                high_water_mark=self.high_water_mark,
                low_water_mark=self.low_water_mark,
            )
        owner.conns.add(conn)
        conn.start()
        if owner.draining and conn.connected:
            drain_connection(conn)
        if owner.saying_goodbye and conn.connected:  # arrived after shutdown began
            try:
                self.handler.on_shutdown(conn)
            except Exception:
                log.exception("handler on_shutdown failed for %r; closing it now", conn)
                conn.force_close()

    def stop_accepting(self) -> None:
        """Close the listening socket; established connections go on."""
        if self._acceptor is not None:
            self._acceptor.close()

    # -- graceful shutdown ----------------------------------------------------------------

    def drain(self) -> None:
        """The server will shut down soon: each connection's handler gets ``on_drain``
        (on the connection's loop), now and as connections are accepted. Serving and
        accepting go on. Any thread."""
        for owner in self._owners:
            owner.loop.run_in_loop(owner.drain)

    def shutdown(
        self, timeout: float = SHUTDOWN_TIMEOUT, on_done: Callable[[], object] | None = None
    ) -> None:
        """Stop accepting now; let connections finish; force-close the rest at ``timeout``.

        Each connection gets ``handler.on_shutdown(conn)`` on its own loop. ``on_done()``
        runs on the accepting loop once every connection is closed. Any thread.
        """
        self.loop.run_in_loop(self._shutdown_in_loop, timeout, on_done)

    def _shutdown_in_loop(self, timeout: float, on_done: Callable[[], object] | None) -> None:
        if on_done is not None:
            if self._shutdown_finished:
                on_done()
                return
            self._shutdown_callbacks.append(on_done)
        if self._shutting_down:
            return
        self._shutting_down = True
        if self._acceptor is not None:
            self._acceptor.accept_backlog()  # (served below: each gets on_shutdown)
        self.stop_accepting()
        log.info("%r: shutting down (timeout %.1f s)", self, timeout)
        self._shutdown_pending = set(self._owners)
        self._shutdown_timer = self.loop.call_later(timeout, self._shutdown_deadline)
        for owner in self._owners:
            owner.loop.run_in_loop(owner.say_goodbye)

    def _loop_drained(self, owner: LoopConnections) -> None:
        self._shutdown_pending.discard(owner)
        if not self._shutdown_pending and not self._shutdown_finished:
            self._finish_shutdown()

    def _shutdown_deadline(self) -> None:
        left = sum(len(owner.conns) for owner in self._shutdown_pending)
        log.warning("%r: shutdown timeout; force-closing %d connection(s)", self, left)
        for owner in self._shutdown_pending:
            owner.loop.run_in_loop(owner.force_close_all)
        self._shutdown_timer = self.loop.call_later(FORCE_CLOSE_GRACE, self._finish_shutdown)

    def _finish_shutdown(self) -> None:
        if self._shutdown_finished:
            return
        self._shutdown_finished = True
        if self._shutdown_timer is not None:
            self._shutdown_timer.cancel()
        if self._shutdown_pending:
            log.error("%r: %d loop(s) did not confirm closing", self, len(self._shutdown_pending))
        callbacks, self._shutdown_callbacks = self._shutdown_callbacks, []
        for callback in callbacks:
            try:
                callback()
            except Exception:
                log.exception("%r: shutdown callback %r failed", self, callback)

    # -- closing ------------------------------------------------------------------------

    def close(self) -> None:
        """Stop accepting, force-close every connection and stop the sub-loops.

        Call it from the accepting loop's thread (or after that loop has stopped).
        """
        self.stop_accepting()
        for owner in self._owners:
            owner.loop.run_in_loop(owner.force_close_all)
        self._pool.stop()


def drain_connection(conn: TcpConnection) -> None:
    """``on_drain`` of the connection's own handler (which may not be the server's)."""
    try:
        conn.handler.on_drain(conn)
    except Exception:
        log.exception("handler on_drain failed for %r; closing it now", conn)
        conn.force_close()


def _owner_load(owner: LoopConnections) -> int:
    return owner.accepted - owner.closed
