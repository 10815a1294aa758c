"""Which signal stops what, and how a process's end is described.

The stop policy of every ioreactor server process::

    first SIGTERM or SIGINT   graceful: stop accepting, let connections finish
    second SIGINT             forced: close everything now (exit status FORCED_EXIT)
    SIGQUIT (workers only)    forced: the supervisor passes a forced stop on this way

Workers ignore SIGINT: a Ctrl-C in a terminal reaches the whole process group, and a
worker must take its orders from the supervisor alone (which forwards SIGTERM), or one
keypress would count twice.

A signal must wake the loop even when it lands in the instant before the poll. CPython
runs a Python handler on the main thread at its next bytecode; a signal that arrives
after the last check and before ``epoll_wait`` leaves the handler pending while the loop
sleeps (forever, in an idle server). :class:`SignalWakeup` gives CPython a socket to
write the signal number to (``signal.set_wakeup_fd``, as asyncio does), which the loop
watches, so the poll returns and the handler runs.
"""

from __future__ import annotations

import logging
import signal
import socket
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from ioreactor.loop.poller import READ

if TYPE_CHECKING:
    from ioreactor.loop.event_loop import EventLoop

log = logging.getLogger("ioreactor.multicore")

#: Exit status after a forced stop: 128 + SIGINT, the shell's code for "interrupted".
FORCED_EXIT = 128 + signal.SIGINT
#: Signals the supervisor handles itself; blocked around fork so that a child never runs
#: the parent's handlers.
CONTROL_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGCHLD})


class SignalWakeup:
    """Wakes ``loop``'s poll whenever a signal arrives (``signal.set_wakeup_fd``).

    One per process (the wakeup fd is process-wide); :meth:`close` restores the previous
    one. A forked child must call ``signal.set_wakeup_fd(-1)`` before closing the fd.
    """

    def __init__(self, loop: EventLoop) -> None:
        self.loop = loop
        self._reader, self._writer = socket.socketpair()
        self._reader.setblocking(False)
        self._writer.setblocking(False)
        self._previous = signal.set_wakeup_fd(self._writer.fileno(), warn_on_full_buffer=False)
        loop.watch(self._reader.fileno(), READ, self._drain)

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


class StopSignals:
    """Runs ``graceful()`` on the first stop signal and ``force()`` on a second SIGINT.

    ``force_signals`` force a stop whatever came before (the workers' SIGQUIT).
    """

    def __init__(
        self,
        loop: EventLoop,
        *,
        graceful: Callable[[], object],
        force: Callable[[], object],
        graceful_signals: Iterable[int] = (signal.SIGTERM, signal.SIGINT),
        force_signals: Iterable[int] = (),
        name: str = "server",
    ) -> None:
        self.loop = loop
        self.name = name
        self._graceful = graceful
        self._force = force
        self.stopping = False
        self.forced = False
        self._signals = [*graceful_signals, *force_signals]
        self._wakeup = SignalWakeup(loop)
        for sig in graceful_signals:
            loop.add_signal_handler(sig, self._on_stop_signal, sig)
        for sig in force_signals:
            loop.add_signal_handler(sig, self._on_force_signal, sig)

    def close(self) -> None:
        """Put the previous handlers and wakeup fd back (before the loop closes)."""
        for sig in self._signals:
            self.loop.remove_signal_handler(sig)
        self._wakeup.close()

    def _on_stop_signal(self, sig: int) -> None:
        if not self.stopping:
            self.stopping = True
            log.info("%s: %s, stopping gracefully", self.name, signal.Signals(sig).name)
            self._graceful()
        elif sig == signal.SIGINT and not self.forced:
            self._on_force_signal(sig)

    def _on_force_signal(self, sig: int) -> None:
        if self.forced:
            return
        self.stopping = self.forced = True
        log.warning("%s: %s, forcing an immediate stop", self.name, signal.Signals(sig).name)
        self._force()


def describe_exit(code: int) -> str:
    """``os.waitstatus_to_exitcode`` result in words: an exit code or the killing signal."""
    if code >= 0:
        return f"exited with code {code}"
    try:
        name = signal.Signals(-code).name
    except ValueError:
        name = f"signal {-code}"
    return f"killed by {name}"
