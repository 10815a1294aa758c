"""The ``Server`` that ``create_server``/``create_unix_server`` return, on ioreactor acceptors.

Data flow::

    listening socket -> Acceptor (batched accept, spare-fd shedding on EMFILE)
      -> on_accept(sock, peer) -> protocol_factory() -> StreamTransport (or TLS over it)
      -> connection_made

Each listening socket gets an ioreactor :class:`~ioreactor.net.acceptor.Acceptor`, so an
asyncio server sheds connections like the native ones do when the process is out of
fds (the pending connection is accepted with a spare fd and closed at once, and the
loop does not spin). ``close()`` closes the listeners; connections go on until they
close themselves, and ``wait_closed()`` follows the interpreter's asyncio (3.12+: it
waits for them).
"""

from __future__ import annotations

import socket
import sys
from asyncio import events, exceptions, futures, tasks, trsock
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ioreactor.net.acceptor import ACCEPT_BATCH, Acceptor
from ioreactor.net.channels import acceptor_class

if TYPE_CHECKING:
    from ioreactor.aio.connections import StreamOps, TlsOptions

#: wait_closed() waits for the connections too (asyncio 3.12's fix of gh-79033).
_WAIT_FOR_CONNECTIONS = sys.version_info >= (3, 12)


class Server(events.AbstractServer):
    """Listening sockets serving one protocol factory (asyncio's ``Server`` API)."""

    def __init__(
        self,
        loop: StreamOps,
        sockets: list[socket.socket],
        protocol_factory: Callable[[], Any],
        tls: TlsOptions | None,
        backlog: int,
    ) -> None:
        self._loop = loop
        self._sockets: list[socket.socket] | None = sockets
        self._acceptors: list[Acceptor] = []
        self._active_count = 0
        self._waiters: list[futures.Future[Any]] | None = []
        self._protocol_factory = protocol_factory
        self._backlog = backlog
        #: What each accepted connection's TLS is made from; None: plain TCP.
        self._tls = tls
        self._serving = False
        self._serving_forever_fut: futures.Future[None] | None = None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} sockets={self.sockets!r}>"

    # -- connections (transports attach and detach) -----------------------------------------

    def _attach(self) -> None:
        self._active_count += 1

    def _detach(self) -> None:
        self._active_count -= 1
        if self._active_count == 0 and self._sockets is None:
            self._wakeup()

    def _wakeup(self) -> None:
        waiters, self._waiters = self._waiters, None
        for waiter in waiters or ():
            if not waiter.done():
                waiter.set_result(waiter)

    @property
    def active_connections(self) -> int:
        """Transports accepted by this server and not closed yet."""
        return self._active_count

    # -- serving -----------------------------------------------------------------------------

    def _start_serving(self) -> None:
        if self._serving or self._sockets is None:
            return
        self._serving = True
        reactor = self._loop.reactor
        make = acceptor_class(reactor)
        for sock in self._sockets:
            sock.listen(self._backlog)
            acceptor = make(reactor, sock, self._on_accept, batch=ACCEPT_BATCH)
            acceptor.start()
            self._acceptors.append(acceptor)

    def _on_accept(self, sock: socket.socket, peer: Any) -> None:
        self._loop._accepted(self, sock, peer)

    def get_loop(self) -> Any:
        return self._loop

    def is_serving(self) -> bool:
        return self._serving

    @property
    def sockets(self) -> tuple[trsock.TransportSocket, ...]:
        if self._sockets is None:
            return ()
        return tuple(trsock.TransportSocket(s) for s in self._sockets)

    def close(self) -> None:
        sockets = self._sockets
        if sockets is None:
            return
        self._sockets = None
        for acceptor in self._acceptors:
            acceptor.close()  # closes its listening socket
        self._acceptors.clear()
        for sock in sockets:
            sock.close()  # the ones never served (start_serving=False)
        self._serving = False
        fut = self._serving_forever_fut
        if fut is not None and not fut.done():
            fut.cancel()
            self._serving_forever_fut = None
        if self._active_count == 0:
            self._wakeup()

    async def start_serving(self) -> None:
        self._start_serving()
        await tasks.sleep(0)

    async def serve_forever(self) -> None:
        if self._serving_forever_fut is not None:
            raise RuntimeError(f"server {self!r} is already being awaited on serve_forever()")
        if self._sockets is None:
            raise RuntimeError(f"server {self!r} is closed")
        self._start_serving()
        self._serving_forever_fut = self._loop.create_future()
        try:
            await self._serving_forever_fut
        except exceptions.CancelledError:
            try:
                self.close()
                await self.wait_closed()
            finally:
                raise
        finally:
            self._serving_forever_fut = None

    async def wait_closed(self) -> None:
        if self._waiters is None:
            return
        if self._sockets is None and not _WAIT_FOR_CONNECTIONS:
            return
        waiter = self._loop.create_future()
        self._waiters.append(waiter)
        await waiter
