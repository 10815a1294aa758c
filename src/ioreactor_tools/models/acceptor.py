"""A blocking accept loop that ``stop()`` can interrupt.

A thread blocked in ``accept()`` cannot be woken portably, so the loop waits in
``poll()`` on the listener and on the read end of a pipe (the self-pipe trick): ``stop``
writes one byte, which is async-signal-safe and thread-safe. The listener is switched to
non-blocking for the same reason the course gives (性能篇_上, 非阻塞 IO 的使用场景): a
client that resets between ``poll`` and ``accept`` would otherwise block the loop in
``accept`` forever. Accepted sockets are set back to blocking: the models built on this
are blocking-I/O models.

On the main thread the pipe is also CPython's signal wakeup fd (``signal.set_wakeup_fd``,
as :mod:`ioreactor.loop.signal_wakeup` does for the reactor): a signal that lands after the
interpreter's last check and before ``poll()`` would otherwise leave its Python handler --
the one that calls ``stop()`` on SIGTERM -- pending while ``poll()`` sleeps, and the server
would not stop (it happened in a full test run). CPython writes the signal number to the
pipe, ``poll()`` returns, the handler runs; only ``stop()`` ends the loop.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import select
import signal
import socket
import threading
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
        self._stop_requested = False
        self._stopped = False
        self._closed = False
        #: The wakeup fd before ours (None: ours is not installed).
        self._previous_wakeup_fd: int | None = None

    def attach(self, listener: socket.socket) -> None:
        """Start watching ``listener`` (owned by the caller)."""
        listener.setblocking(False)
        self._poller.register(listener.fileno(), select.POLLIN)
        self._listener = listener
        if threading.current_thread() is threading.main_thread():
            self._previous_wakeup_fd = signal.set_wakeup_fd(self._wake_w, warn_on_full_buffer=False)

    def close_in_child(self) -> None:
        """In a forked child: give up the listener and the wakeup pipe (the signal wakeup
        fd first, so that no signal writes to a closed or reused descriptor)."""
        assert self._listener is not None, "attach() first"
        if self._previous_wakeup_fd is not None:
            signal.set_wakeup_fd(-1)
        for fd in (self._listener.fileno(), self._wake_r, self._wake_w):
            os.close(fd)

    def accept(self) -> socket.socket | None:
        """Return the next connection (blocking), or None once stopped."""
        assert self._listener is not None, "attach() first"
        while not self._stopped:
            events = self._poller.poll()
            if any(fd == self._wake_r for fd, _ in events):
                self._drain_wakeups()  # a signal's handler has run by now
                if self._stop_requested:
                    self._stopped = True
                    break
                continue
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
        self._stop_requested = True
        with contextlib.suppress(BlockingIOError):  # the pipe already holds a wakeup
            os.write(self._wake_w, b"x")

    def _drain_wakeups(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while os.read(self._wake_r, 4096):
                pass

    def close(self) -> None:
        """Release the wakeup pipe; later ``stop`` calls do nothing."""
        self._closed = True
        if self._previous_wakeup_fd is not None:
            signal.set_wakeup_fd(self._previous_wakeup_fd)
            self._previous_wakeup_fd = None
        os.close(self._wake_r)
        os.close(self._wake_w)
