"""A blocking accept loop that ``stop()`` can interrupt.

A thread blocked in ``accept()`` cannot be woken portably, so the loop waits in
``poll()`` on the listener and on the read end of a pipe (the self-pipe trick): ``stop``
writes one byte, which is async-signal-safe and thread-safe. The listener is switched to
non-blocking for the same reason the course gives (性能篇_上, 非阻塞 IO 的使用场景): a
client that resets between ``poll`` and ``accept`` would otherwise block the loop in
``accept`` forever. Accepted sockets are set back to blocking: the models built on this
are blocking-I/O models.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import select
import socket
import time

log = logging.getLogger(__name__)

# Out of descriptors: the pending connection stays in the backlog; back off instead of
# spinning on a listener that stays readable.
_EXHAUSTED = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}
_EXHAUSTED_BACKOFF_S = 0.05


class StoppableAcceptor:
    """Accept connections one at a time until :meth:`stop` is called.

    Created with its model, so a ``stop`` that arrives before ``serve`` is not lost;
    ``attach`` hands it the listener when serving starts.
    """

    def __init__(self) -> None:
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._poller = select.poll()
        self._poller.register(self._wake_r, select.POLLIN)
        self._listener: socket.socket | None = None
        self._stopped = False
        self._closed = False

    def attach(self, listener: socket.socket) -> None:
        """Start watching ``listener`` (owned by the caller)."""
        listener.setblocking(False)
        self._poller.register(listener.fileno(), select.POLLIN)
        self._listener = listener

    def fds(self) -> tuple[int, ...]:
        """Descriptors a forked child must close: the listener and the wakeup pipe."""
        assert self._listener is not None, "attach() first"
        return (self._listener.fileno(), self._wake_r, self._wake_w)

    def accept(self) -> socket.socket | None:
        """Return the next connection (blocking), or None once stopped."""
        assert self._listener is not None, "attach() first"
        while not self._stopped:
            events = self._poller.poll()
            if any(fd == self._wake_r for fd, _ in events):
                self._stopped = True
                break
            try:
                conn, _ = self._listener.accept()
            except (BlockingIOError, ConnectionAbortedError):
                continue  # the client went away between poll and accept
            except OSError as exc:
                if exc.errno not in _EXHAUSTED:
                    raise
                log.warning("accept: %s; backing off", exc.strerror)
                time.sleep(_EXHAUSTED_BACKOFF_S)
                continue
            conn.setblocking(True)
            return conn
        return None

    def stop(self) -> None:
        """Make ``accept`` return None; callable from any thread or a signal handler."""
        if self._closed:
            return
        with contextlib.suppress(BlockingIOError):  # the pipe already holds a wakeup
            os.write(self._wake_w, b"x")

    def close(self) -> None:
        """Release the wakeup pipe; later ``stop`` calls do nothing."""
        self._closed = True
        os.close(self._wake_r)
        os.close(self._wake_w)
