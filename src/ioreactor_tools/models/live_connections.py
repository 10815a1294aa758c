"""The connections a threaded model is serving, so ``stop`` can unblock their threads.

A thread blocked in ``recv`` or ``send`` on a blocking socket wakes only when the socket
does; ``shutdown(SHUT_RDWR)`` makes both return at once (EOF / EPIPE). Closing and
shutting down happen under one lock so a descriptor is never shut down after its number
was reused by a newer connection, and a connection added after ``shutdown_all`` (a worker
that dequeued it just before the stop) is shut down on arrival.
"""

from __future__ import annotations

import contextlib
import socket
import threading


class LiveConnections:
    """A locked set of sockets in service."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._conns: set[socket.socket] = set()
        self._stopping = False

    def add(self, conn: socket.socket) -> None:
        with self._lock:
            self._conns.add(conn)
            if self._stopping:
                _shutdown(conn)

    def close(self, conn: socket.socket) -> None:
        """Forget ``conn`` and close it."""
        with self._lock:
            self._conns.discard(conn)
            conn.close()

    def shutdown_all(self) -> None:
        """Wake every thread blocked on one of the sockets; their owners close them."""
        with self._lock:
            self._stopping = True
            for conn in self._conns:
                _shutdown(conn)


def _shutdown(conn: socket.socket) -> None:
    with contextlib.suppress(OSError):  # already reset by the peer
        conn.shutdown(socket.SHUT_RDWR)
