"""The fd-passing main reactor: accept in the supervisor, serve in the workers.

::

    client --> listener (supervisor loop)
                 Acceptor: accept a batch, pick a worker for each fd
                 end of iteration: one sendmsg(SCM_RIGHTS) per worker with its fds
               --> worker 0 channel --> TcpServer.adopt() --> its loops
               --> worker 1 channel --> ...

A worker that cannot take fds (queue full: stuck or stopped) or has died gives its
undelivered fds back and they go to the others; while no worker can take any, the
dispatcher stops accepting and the kernel's listen backlog holds new connections.
"""

from __future__ import annotations

import collections
import logging
import os
import socket
from typing import TYPE_CHECKING, Any

from ioreactor.loop.poller import READ
from ioreactor.net.acceptor import ACCEPT_BATCH, Acceptor
from ioreactor.net.server import Balance, peer_hash

if TYPE_CHECKING:
    from ioreactor.loop.event_loop import EventLoop
    from ioreactor.multicore.channel import ParentChannel

log = logging.getLogger("ioreactor.multicore")


class FdDispatcher:
    """Accepts on ``listener`` and hands each connection to an available worker."""

    def __init__(
        self,
        loop: EventLoop,
        listener: socket.socket,
        *,
        balance: Balance = "round-robin",
        accept_batch: int = ACCEPT_BATCH,
    ) -> None:
        self.loop = loop
        self.listener = listener
        self.balance = balance
        self._acceptor = Acceptor(loop, listener, self._on_accept, batch=accept_batch)
        self._channels: dict[int, ParentChannel] = {}
        #: Channels that take fds now (ready and not blocked), by worker index.
        self._available: list[ParentChannel] = []
        self._next = 0
        #: Accepted fds no worker could take yet.
        self._waiting: collections.deque[int] = collections.deque()
        self._accepting = False
        self._closed = False
        self.handed_over = 0

    def __repr__(self) -> str:
        return f"<FdDispatcher workers={len(self._available)}/{len(self._channels)}>"

    @property
    def shed(self) -> int:
        """Connections accepted and closed at once for lack of fds (EMFILE)."""
        return self._acceptor.rejected_for_fds

    # -- workers come and go -------------------------------------------------------------

    def add_worker(self, channel: ParentChannel) -> None:
        """``channel``'s worker is ready: it takes fds from now on."""
        self._channels[channel.index] = channel
        channel.on_blocked = self._on_blocked
        channel.on_writable = self._on_writable
        self._refresh()

    def remove_worker(self, channel: ParentChannel) -> None:
        """The worker died or is retiring: no more fds for it (its channel's owner closes
        the channel). A replacement that took its index already stays."""
        if self._channels.get(channel.index) is channel:
            del self._channels[channel.index]
            self._refresh()

    def redispatch(self, fds: list[int]) -> None:
        """Give fds a dead worker never received to the others (or close them if closing)."""
        if fds:
            log.info("re-dispatching %d connection(s) a dead worker never received", len(fds))
            self._place(fds)

    def _on_blocked(self, channel: ParentChannel) -> None:
        log.debug("worker %d is not taking fds; sending elsewhere", channel.index)
        self._refresh()
        self._place(channel.take_outbox())

    def _on_writable(self, channel: ParentChannel) -> None:
        self._refresh()

    def _refresh(self) -> None:
        self._available = [ch for _, ch in sorted(self._channels.items()) if not ch.blocked]
        if self._available and self._waiting:
            waiting = list(self._waiting)
            self._waiting.clear()
            self._place(waiting)
        self._set_accepting(bool(self._available) and not self._waiting and not self._closed)

    # -- accepting and placing ------------------------------------------------------------

    def _set_accepting(self, on: bool) -> None:
        if on == self._accepting:
            return
        self._accepting = on
        if on and not self._acceptor.listening:
            self._acceptor.start()
            return
        fd = self.listener.fileno()
        if on:
            self.loop.watch(fd, READ, self._acceptor.handle_read)
        else:
            self.loop.unwatch(fd)

    def _pick(self, peer: Any) -> ParentChannel | None:
        available = self._available
        if not available:
            return None
        if self.balance == "least-connections":
            return min(available, key=_channel_load)
        if self.balance == "hash" and peer is not None:
            return available[peer_hash(peer) % len(available)]
        i = self._next % len(available)
        self._next = i + 1
        return available[i]

    def _on_accept(self, sock: socket.socket, peer: Any) -> None:
        fd = sock.detach()
        channel = self._pick(peer)
        if channel is None:
            self._waiting.append(fd)
            self._set_accepting(False)
            return
        self.handed_over += 1
        channel.queue_fd(fd)

    def _place(self, fds: list[int]) -> None:
        for fd in fds:
            if self._closed:
                os.close(fd)
                continue
            channel = self._pick(None)
            if channel is None:
                self._waiting.append(fd)
            else:
                channel.queue_fd(fd)
        if self._waiting:
            self._set_accepting(False)

    # -- closing --------------------------------------------------------------------------

    def stop_accepting(self) -> None:
        """Close the listener; fds nobody took are closed (their clients see a close)."""
        if self._closed:
            return
        if self._accepting:
            self._acceptor.accept_backlog()  # queued connections would be reset
        self._closed = True
        self._set_accepting(False)
        self._acceptor.close()  # closes the listener
        for fd in self._waiting:
            os.close(fd)
        self._waiting.clear()


def _channel_load(channel: ParentChannel) -> int:
    return channel.load
