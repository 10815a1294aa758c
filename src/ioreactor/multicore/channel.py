"""The supervisor <-> worker channel: one SOCK_SEQPACKET socketpair per worker.

::

    supervisor (ParentChannel)                          worker (WorkerChannel)
      queue_fd(fd) ... end of iteration:
      sendmsg("F" family, SCM_RIGHTS [fd, fd, ...]) -->  recvmsg -> on_fds(fds, family)
      on_ready(channel)                            <--  "R"                    ready()
      channel.active / channel.received            <--  "L" active received   report()
      channel.last_heard (watchdog)                <--  "A"                    alive()
      on_recycle(channel, reason)                  <--  "C" reason             recycle(reason)
      retire()   "X" ------------------------------->  on_retire(): stop accepting, drain

Message boundaries are kept (SEQPACKET), so each ``recvmsg`` is one message and one
batch of fds. All fds accepted during one loop iteration for one worker leave in one
``sendmsg`` (up to the kernel's SCM_MAX_FD of 253 per message): the hand-off costs one
system call per batch, not per connection.

The supervisor keeps its own copy of the worker's end. If the worker dies with fds still
queued to it, :meth:`ParentChannel.take_unreceived` reads them back so another worker can
serve those connections; nothing is lost and nothing leaks.

A channel whose queue is full (a stuck or stopped worker; the kernel allows
``net.unix.max_dgram_qlen`` messages) says so with ``on_blocked`` and keeps its unsent
fds for the dispatcher to place elsewhere; ``on_writable`` fires when it drains.
"""

from __future__ import annotations

import array
import logging
import os
import socket
import struct
from collections.abc import Callable
from typing import TYPE_CHECKING

from ioreactor.loop.poller import READ, WRITE

if TYPE_CHECKING:
    from ioreactor.loop.event_loop import EventLoop

log = logging.getLogger("ioreactor.multicore")

#: Most fds one SCM_RIGHTS message may carry on Linux (SCM_MAX_FD).
MAX_FDS_PER_MESSAGE = 253
#: Messages a worker reads per readiness event before serving other fds.
RECEIVE_BATCH = 64

TAG_FDS = b"F"
TAG_READY = b"R"
TAG_LOAD = b"L"
TAG_ALIVE = b"A"
TAG_RECYCLE = b"C"
TAG_RETIRE = b"X"
#: Longest reason a worker gives for wanting a replacement.
MAX_REASON = 64
_FDS = struct.Struct("=cH")  # tag, address family of the fds
_LOAD = struct.Struct("=cQQ")  # tag, open connections, fds received so far
_MESSAGE_SIZE = max(_FDS.size, _LOAD.size, 1 + MAX_REASON)
_ANCILLARY_SIZE = socket.CMSG_SPACE(MAX_FDS_PER_MESSAGE * array.array("i").itemsize)
_RECV_FLAGS = getattr(socket, "MSG_CMSG_CLOEXEC", 0)


def channel_pair() -> tuple[socket.socket, socket.socket]:
    """(supervisor end, worker end), both non-blocking."""
    parent_end, worker_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    parent_end.setblocking(False)
    worker_end.setblocking(False)
    return parent_end, worker_end


def _fds_from(ancdata: list[tuple[int, int, bytes]], flags: int) -> list[int]:
    fds = array.array("i")
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(data[: len(data) - len(data) % fds.itemsize])
    if flags & socket.MSG_CTRUNC:
        log.error("fd message truncated: the kernel closed the fds that did not fit")
    return fds.tolist()


class ParentChannel:
    """The supervisor's end of one worker's channel."""

    __slots__ = (
        "_flush_queued",
        "_header",
        "active",
        "blocked",
        "index",
        "last_heard",
        "loop",
        "on_blocked",
        "on_ready",
        "on_recycle",
        "on_writable",
        "outbox",
        "received",
        "sent",
        "sock",
        "worker_end",
    )

    def __init__(
        self,
        loop: EventLoop,
        index: int,
        sock: socket.socket,
        worker_end: socket.socket,
        family: int = socket.AF_INET,
    ) -> None:
        self.loop = loop
        self.index = index
        self.sock = sock
        self.worker_end = worker_end
        self._header = _FDS.pack(TAG_FDS, family)
        #: Accepted fds waiting for the end of this iteration.
        self.outbox: list[int] = []
        self._flush_queued = False
        self.blocked = False
        #: Fds handed over so far, and the worker's last report of its own counts.
        self.sent = 0
        self.active = 0
        self.received = 0
        #: Loop time of the worker's last message (its liveness, for the watchdog).
        self.last_heard = loop.time()
        self.on_ready: Callable[[ParentChannel], object] | None = None
        self.on_recycle: Callable[[ParentChannel, str], object] | None = None
        self.on_blocked: Callable[[ParentChannel], object] | None = None
        self.on_writable: Callable[[ParentChannel], object] | None = None
        loop.watch(sock.fileno(), READ, self._handle_event)

    def __repr__(self) -> str:
        return f"<ParentChannel worker={self.index} sent={self.sent} load={self.load}>"

    @property
    def load(self) -> int:
        """Open connections as last reported, plus fds queued or sent since that report."""
        return self.active + self.sent + len(self.outbox) - self.received

    # -- fds out ------------------------------------------------------------------------

    def queue_fd(self, fd: int) -> None:
        """Hand ``fd`` to the worker at the end of this loop iteration (it owns it then)."""
        self.outbox.append(fd)
        if not self._flush_queued:
            self._flush_queued = True
            self.loop.pending_flush.append(self)

    def _flush(self) -> None:
        self._flush_queued = False
        if self.outbox and not self.blocked:
            self._send_outbox()

    def _send_outbox(self) -> None:
        outbox = self.outbox
        sendmsg = self.sock.sendmsg
        header = [self._header]
        while outbox:
            batch = outbox[:MAX_FDS_PER_MESSAGE]
            try:
                sendmsg(header, [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", batch))])
            except BlockingIOError:
                self._set_blocked()
                return
            except OSError as exc:
                log.warning("worker %d channel: %s", self.index, exc)
                self._set_blocked()
                return
            del outbox[: len(batch)]
            self.sent += len(batch)
            for fd in batch:  # the worker holds its own copy now
                os.close(fd)

    def _set_blocked(self) -> None:
        self.blocked = True
        self.loop.modify(self.sock.fileno(), READ | WRITE)
        if self.on_blocked is not None:
            self.on_blocked(self)

    def retire(self) -> None:
        """Tell the worker it is replaced: stop accepting, finish, exit."""
        try:
            self.sock.send(TAG_RETIRE)
        except OSError as exc:
            log.debug("worker %d channel: %s", self.index, exc)

    def take_outbox(self) -> list[int]:
        fds, self.outbox = self.outbox, []
        return fds

    def take_unreceived(self) -> list[int]:
        """Read back the fds the worker never received (call once it is dead)."""
        fds: list[int] = []
        while True:
            try:
                _, ancdata, flags, _ = self.worker_end.recvmsg(
                    _MESSAGE_SIZE, _ANCILLARY_SIZE, _RECV_FLAGS
                )
            except (BlockingIOError, OSError):
                return fds
            fds += _fds_from(ancdata, flags)

    # -- messages in --------------------------------------------------------------------

    def _handle_event(self, events: int) -> None:
        if events & WRITE and self.blocked:
            self.blocked = False
            self.loop.modify(self.sock.fileno(), READ)
            if self.on_writable is not None:
                self.on_writable(self)
        if events & READ:
            self._read_messages()

    def _read_messages(self) -> None:
        recv = self.sock.recv
        for _ in range(RECEIVE_BATCH):
            try:
                message = recv(_MESSAGE_SIZE)
            except (BlockingIOError, OSError):
                return
            if not message:
                return
            self.last_heard = self.loop.time()
            tag = message[:1]
            if tag == TAG_LOAD and len(message) == _LOAD.size:
                _, self.active, self.received = _LOAD.unpack(message)
            elif tag == TAG_ALIVE:
                pass
            elif tag == TAG_READY:
                if self.on_ready is not None:
                    self.on_ready(self)
            elif tag == TAG_RECYCLE:
                if self.on_recycle is not None:
                    self.on_recycle(self, message[1:].decode("ascii", "replace"))
            else:
                log.warning("worker %d sent an unknown message %r", self.index, message)

    def close(self) -> list[int]:
        """Stop watching, close both ends; returns the fds that were never delivered."""
        fds = self.take_outbox() + self.take_unreceived()
        self.loop.unwatch(self.sock.fileno())
        self.sock.close()
        self.worker_end.close()
        return fds


class WorkerChannel:
    """The worker's end: receives fds, tells the supervisor it is ready and how loaded."""

    __slots__ = ("loop", "on_fds", "on_parent_gone", "on_retire", "received", "sock")

    def __init__(
        self,
        loop: EventLoop,
        sock: socket.socket,
        on_fds: Callable[[list[int], int], object],
        on_parent_gone: Callable[[], object],
        on_retire: Callable[[], object] | None = None,
    ) -> None:
        self.loop = loop
        self.sock = sock
        self.on_fds = on_fds
        self.on_parent_gone = on_parent_gone
        self.on_retire = on_retire
        #: Fds received so far (reported back, so the supervisor can count those in flight).
        self.received = 0
        loop.watch(sock.fileno(), READ, self._handle_event)

    def ready(self) -> None:
        self._send(TAG_READY)

    def report(self, active: int) -> None:
        self._send(_LOAD.pack(TAG_LOAD, active, self.received))

    def alive(self) -> None:
        """The loop runs (the supervisor's watchdog counts on it)."""
        self._send(TAG_ALIVE)

    def recycle(self, reason: str) -> None:
        """Ask for a replacement (``--max-requests``): the supervisor starts one, then
        retires this worker."""
        self._send(TAG_RECYCLE + reason.encode("ascii", "replace")[:MAX_REASON])

    def _send(self, message: bytes) -> None:
        try:
            self.sock.send(message)
        except OSError as exc:  # the supervisor is gone or not reading: nothing to tell
            log.debug("channel send failed: %s", exc)

    def _handle_event(self, events: int) -> None:
        self.receive(RECEIVE_BATCH)

    def receive(self, limit: int | None = None) -> None:
        """Take queued fd messages (up to ``limit``, or all of them)."""
        recvmsg = self.sock.recvmsg
        n = 0
        while limit is None or n < limit:
            n += 1
            try:
                message, ancdata, flags, _ = recvmsg(_MESSAGE_SIZE, _ANCILLARY_SIZE, _RECV_FLAGS)
            except BlockingIOError:
                return
            except OSError as exc:
                log.warning("channel receive failed: %s", exc)
                self._parent_gone()
                return
            if not message:
                self._parent_gone()
                return
            fds = _fds_from(ancdata, flags)
            if message == TAG_RETIRE and not fds:
                if self.on_retire is not None:
                    self.on_retire()
                continue
            if message[:1] != TAG_FDS or len(message) != _FDS.size:
                log.warning("unknown message %r from the supervisor", message)
                for fd in fds:
                    os.close(fd)
                continue
            self.received += len(fds)
            _, family = _FDS.unpack(message)
            self.on_fds(fds, family)

    def _parent_gone(self) -> None:
        self.loop.unwatch(self.sock.fileno())
        self.on_parent_gone()

    def close(self) -> None:
        self.loop.unwatch(self.sock.fileno())
        self.sock.close()
