"""The listening socket's channel: accepts in bounded batches and survives EMFILE.

EMFILE (the process is out of fds) is the classic accept-loop trap: the pending
connection stays in the backlog, the listening fd stays readable, and a level-triggered
loop spins at 100% CPU without serving anyone. The fix (libev's and muduo's) is a spare
fd held in reserve: on EMFILE, close the spare, accept the connection, close it at once
(the peer sees a clean close instead of a hang), and take the spare back.

The spare can be lost: under ENFILE (the system's table is full) another process may
take the slot it freed, and with sub-loop threads another thread may. Then nothing can
be shed, so the acceptor stops watching the listener for ``EXHAUSTED_PAUSE`` and tries
again (reopening the spare first) instead of spinning.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from ioreactor.loop.poller import READ
from ioreactor.net.sockopt import SockOpt, apply_sockopts
from ioreactor.net.unix import UnixSocket, bind_unix

if TYPE_CHECKING:
    from ioreactor.loop.event_loop import EventLoop
    from ioreactor.loop.timers import TimerHandle

log = logging.getLogger("ioreactor.acceptor")

#: Connections accepted per readiness event before the loop serves other fds.
ACCEPT_BATCH = 64
#: Default listen() backlog (the kernel caps it at net.core.somaxconn).
BACKLOG = 1024
#: Seconds the acceptor stops watching the listener when out of fds with no spare fd.
EXHAUSTED_PAUSE = 0.1

#: accept() errors meaning the process or the system is out of fds (or memory): shed.
FD_EXHAUSTED = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)
#: Errors for one pending connection only (it died in the backlog): skip it. Linux's
#: accept() also passes a pending network error of the new connection on as its own
#: error; accept(2) says to treat those like EAGAIN and retry (the rest of the tuple).
TRANSIENT_ERRORS = tuple(
    code
    for name in (
        "ECONNABORTED",
        "EPROTO",
        "EPERM",
        "EINTR",
        "ENETDOWN",
        "ENOPROTOOPT",
        "EHOSTDOWN",
        "ENONET",
        "EHOSTUNREACH",
        "EOPNOTSUPP",
        "ENETUNREACH",
    )
    if (code := getattr(errno, name, None)) is not None
)


def open_listener(
    family: int,
    sockaddr: Any,
    *,
    backlog: int = BACKLOG,
    reuse_addr: bool = True,
    reuse_port: bool = False,
    v6only: bool | None = None,
    sockopts: Iterable[SockOpt] = (),
) -> socket.socket:
    """A bound, listening, non-blocking stream socket.

    ``sockopts`` are set before bind (Linux copies them to every accepted socket).
    AF_UNIX: ``sockaddr`` is a path (``"\\0name"`` abstract); the socket removes its file
    when closed, and a stale file from a crashed run is replaced but a live server's is
    not (see :mod:`ioreactor.net.unix`).
    """
    if reuse_port and family == socket.AF_UNIX:
        raise ValueError("SO_REUSEPORT does not apply to Unix sockets (pass fds instead)")
    sock = UnixSocket() if family == socket.AF_UNIX else socket.socket(family, socket.SOCK_STREAM)
    try:
        if reuse_addr and family != socket.AF_UNIX:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if v6only is not None and family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1 if v6only else 0)
        apply_sockopts(sock, sockopts)
        if family == socket.AF_UNIX:
            bind_unix(sock, _unix_path(sockaddr))
        else:
            sock.bind(sockaddr)
        sock.listen(backlog)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def _unix_path(sockaddr: str | bytes) -> str:
    """A sockaddr (``"\\0name"`` for abstract names) in the ``@name`` form addresses use."""
    name = os.fsdecode(sockaddr)
    return "@" + name[1:] if name.startswith("\0") else name


class Acceptor:
    """Calls ``on_accept(sock, peer)`` for each new connection (sock is non-blocking)."""

    def __init__(
        self,
        loop: EventLoop,
        listener: socket.socket,
        on_accept: Callable[[socket.socket, Any], None],
        *,
        batch: int = ACCEPT_BATCH,
    ) -> None:
        self.loop = loop
        self.listener = listener
        self.on_accept = on_accept
        self.batch = batch
        self._spare_fd = _open_spare()
        self._last_exhausted_log = 0.0
        self.rejected_for_fds = 0
        self._listening = False
        self._paused: TimerHandle | None = None

    @property
    def listening(self) -> bool:
        return self._listening

    def start(self) -> None:
        self.loop.watch(self.listener.fileno(), READ, self.handle_read)
        self._listening = True

    def handle_read(self, events: int) -> None:
        if not self._listening or self._paused is not None:
            return  # a continuation queued before close() or a pause
        accept = self.listener.accept
        for _ in range(self.batch):
            try:
                sock, peer = accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in FD_EXHAUSTED:
                    if not self._shed_one(exc):
                        self._pause()
                        return
                    break
                if exc.errno in TRANSIENT_ERRORS:
                    continue
                log.error("accept() on %s failed: %s", self.listener.getsockname(), exc)
                return
            sock.setblocking(False)
            self.on_accept(sock, peer)
        if self.loop.edge_triggered:
            # The batch ended before EAGAIN. A level-triggered poller reports the queued
            # connections again; an edge-triggered one never would, so come back after
            # the other ready fds have had their turn.
            self.loop.call_soon(self.handle_read, events)

    def accept_backlog(self, limit: int = 4 * ACCEPT_BATCH) -> None:
        """Accept the connections waiting in the listen queue now, before the listener
        closes: closing would reset them, after their clients may have sent a request."""
        if not self._listening or self._paused is not None:
            return
        accept = self.listener.accept
        for _ in range(limit):
            try:
                sock, peer = accept()
            except OSError:
                return  # EAGAIN: the queue is empty (or the listener cannot accept now)
            sock.setblocking(False)
            self.on_accept(sock, peer)

    def _shed_one(self, exc: OSError) -> bool:
        """Out of fds: accept the oldest pending connection with the spare fd and close it.

        False when there is no spare fd to do it with (and none can be opened now).
        """
        self.rejected_for_fds += 1
        now = time.monotonic()
        if now - self._last_exhausted_log >= 1.0:
            self._last_exhausted_log = now
            log.warning(
                "accept: %s; closing new connections until fds are free (%d so far)",
                exc.strerror,
                self.rejected_for_fds,
            )
        if self._spare_fd < 0:
            self._spare_fd = _open_spare()  # fds may have been freed since it was lost
            if self._spare_fd < 0:
                return False
        os.close(self._spare_fd)
        self._spare_fd = -1
        try:
            sock, _ = self.listener.accept()
            sock.close()
        except OSError:
            pass
        self._spare_fd = _open_spare()
        return True

    def _pause(self) -> None:
        """Nothing to shed with: stop watching the listener for a moment, not spin."""
        self.loop.unwatch(self.listener.fileno())
        self._paused = self.loop.call_later(EXHAUSTED_PAUSE, self._resume)

    def _resume(self) -> None:
        self._paused = None
        if self._listening:
            self.loop.watch(self.listener.fileno(), READ, self.handle_read)

    def close(self) -> None:
        """Stop accepting and close the listening socket."""
        if self._paused is not None:
            self._paused.cancel()
            self._paused = None
        elif self._listening:
            self.loop.unwatch(self.listener.fileno())
        self._listening = False
        self.listener.close()
        if self._spare_fd >= 0:
            os.close(self._spare_fd)
            self._spare_fd = -1


def _open_spare() -> int:
    """The spare fd, or -1 when there is no fd for it."""
    try:
        return os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return -1
