"""A signal wakes the loop's poll, even one that lands in the instant before the poll.

CPython runs a Python signal handler on the main thread at its next bytecode. A signal
that arrives after the last check and before ``epoll_wait`` -- or one the kernel delivers
to another thread of the process -- leaves the handler pending while the loop sleeps
(forever, in an idle server: ``ioreactor echo`` sometimes ignored SIGTERM that way).
:class:`SignalWakeup` gives CPython a socket to write the signal number to
(``signal.set_wakeup_fd``, as asyncio does), which the loop watches, so the poll returns
and the handler runs. :meth:`EventLoop.add_signal_handler` installs one for its loop.

    signal -> C handler (any thread) -> byte on the wakeup socket -> poll returns
           -> the Python handler runs on the main thread -> the callback is queued
"""

from __future__ import annotations

import signal
import socket
from typing import TYPE_CHECKING

from ioreactor.loop.poller import READ

if TYPE_CHECKING:
    from ioreactor.loop.event_loop import EventLoop


class SignalWakeup:
    """Wakes ``loop``'s poll whenever a signal arrives (``signal.set_wakeup_fd``).

    One at a time per process (the wakeup fd is process-wide); :meth:`close` restores the
    previous one. Create and close it on the main thread. A forked child must call
    ``signal.set_wakeup_fd(-1)`` before closing the fd.
    """

    def __init__(self, loop: EventLoop) -> None:
        self.loop = loop
        self._reader, self._writer = socket.socketpair()
        self._reader.setblocking(False)
        self._writer.setblocking(False)
        self._previous = signal.set_wakeup_fd(self._writer.fileno(), warn_on_full_buffer=False)
        loop.watch(self._reader.fileno(), READ, self._drain)

    @property
    def fd(self) -> int:
        """The fd CPython writes to (what ``signal.set_wakeup_fd`` returns while installed)."""
        return self._writer.fileno()

    def _drain(self, events: int) -> None:
        try:
            while self._reader.recv(4096):
                pass
        except OSError:
            pass  # drained (the handlers themselves run on the main thread's next bytecode)

    def close(self) -> None:
        if self._reader.fileno() < 0:
            return
        signal.set_wakeup_fd(self._previous)
        self.loop.unwatch(self._reader.fileno())
        self._reader.close()
        self._writer.close()
