"""Zero-copy file bodies: ``os.sendfile`` from a file to a connection's socket.

The connection's own output must reach the kernel first (the response head, and any
earlier pipelined responses), and the file must then go out in non-blocking pieces driven
by the loop. The connection already owns its fd's registration with the poller, so the
sender watches a duplicate of the socket's fd for writability: the same socket, a second
poller entry that is this object's alone, removed (and closed) when the file is done or
the connection ends. While the connection still has queued output the sender waits; that
output drains as the socket becomes writable, which is when the sender is woken too.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import TYPE_CHECKING

from ioreactor.loop.poller import WRITE

if TYPE_CHECKING:
    from ioreactor.net.connection import TcpConnection

log = logging.getLogger("ioreactor.http.sendfile")

#: Bytes per ``sendfile`` call.
SENDFILE_CHUNK = 256 * 1024
#: Bytes sent per writability event before the loop serves other connections.
SENDFILE_BUDGET = 1024 * 1024
#: Seconds between retries on an edge-triggered poller while the connection's own
#: output drains (no new edge is guaranteed for the sender's duplicate fd).
EDGE_RETRY = 0.005


class FileSender:
    """Sends ``count`` bytes of ``file_fd`` from ``offset`` to ``conn``; then ``on_done(ok)``.

    ``ok`` is False when the connection failed or closed, or the file ended early. The
    sender does not close ``file_fd`` (its owner does).
    """

    __slots__ = ("_sock_fd", "conn", "count", "file_fd", "offset", "on_done", "sent")

    def __init__(
        self,
        conn: TcpConnection,
        file_fd: int,
        offset: int,
        count: int,
        on_done: Callable[[bool], None],
    ) -> None:
        self.conn = conn
        self.file_fd = file_fd
        self.offset = offset
        self.count = count
        self.sent = 0
        self.on_done = on_done
        self._sock_fd = -1

    def start(self) -> None:
        """Begin once the socket is writable and the connection's output has drained."""
        if self.count <= 0:
            self._finish(True)
            return
        self._sock_fd = os.dup(self.conn.fd)
        self.conn.loop.watch(self._sock_fd, WRITE, self._on_writable)

    @property
    def active(self) -> bool:
        return self._sock_fd >= 0

    def _on_writable(self, mask: int) -> None:
        conn = self.conn
        loop = conn.loop
        if conn.closed:
            self._finish(False)
            return
        if conn.output_size:
            if loop.poller.edge_triggered:
                loop.call_later(EDGE_RETRY, self._retry)
            return
        budget = SENDFILE_BUDGET
        while budget > 0:
            want = min(self.count - self.sent, SENDFILE_CHUNK)
            try:
                n = os.sendfile(self._sock_fd, self.file_fd, self.offset + self.sent, want)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.debug("sendfile to %s failed: %s", conn.peer, exc)
                self._finish(False)
                return
            if n == 0:  # the file shrank under us: the promised length cannot be met
                log.warning("file ended %d bytes early for %s", self.count - self.sent, conn.peer)
                self._finish(False)
                return
            self.sent += n
            conn.last_write = loop.now
            if self.sent >= self.count:
                self._finish(True)
                return
            budget -= n
        if loop.poller.edge_triggered:
            loop.call_soon(self._retry)  # the socket is still writable: no new edge will come

    def _retry(self) -> None:
        if self._sock_fd >= 0:
            self._on_writable(WRITE)

    def cancel(self) -> None:
        """Stop without notifying (the connection is gone)."""
        self._release()

    def _release(self) -> None:
        fd, self._sock_fd = self._sock_fd, -1
        if fd >= 0:
            self.conn.loop.unwatch(fd)
            os.close(fd)

    def _finish(self, ok: bool) -> None:
        self._release()
        self.on_done(ok)
