"""Which signal stops what, and how a process's end is described.

The stop policy of every ioreactor server process::

    first SIGTERM, SIGINT     graceful: stop accepting, let connections finish
      (or SIGHUP without
      a supervisor)
    second SIGINT             forced: close everything now (exit status FORCED_EXIT)
    SIGQUIT (workers only)    forced: the supervisor passes a forced stop on this way
    SIGHUP (supervisor)       zero-downtime reload (new workers, then the old ones retire)
    SIGUSR2 (supervisor)      upgrade: a new supervisor inherits the listeners

Workers ignore SIGINT, SIGHUP and SIGUSR2: a Ctrl-C, or a closed terminal, reaches the
whole process group, and a worker must take its orders from the supervisor alone (which
forwards SIGTERM), or one keypress would count twice.

Every handler is installed with :meth:`EventLoop.add_signal_handler`, which also makes
a signal wake the loop's poll even when it lands just before ``epoll_wait``
(:mod:`ioreactor.loop.signal_wakeup`).
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ioreactor.loop.event_loop import EventLoop

log = logging.getLogger("ioreactor.multicore")

#: Exit status after a forced stop: 128 + SIGINT, the shell's code for "interrupted".
FORCED_EXIT = 128 + signal.SIGINT
#: Signals the supervisor handles itself; blocked around fork so that a child never runs
#: the parent's handlers.
CONTROL_SIGNALS = frozenset(
    {signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGCHLD, signal.SIGUSR2}
)


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
        graceful_signals: Iterable[int] = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP),
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
        for sig in graceful_signals:
            loop.add_signal_handler(sig, self._on_stop_signal, sig)
        for sig in force_signals:
            loop.add_signal_handler(sig, self._on_force_signal, sig)

    def close(self) -> None:
        """Put the previous handlers and wakeup fd back (before the loop closes)."""
        for sig in self._signals:
            self.loop.remove_signal_handler(sig)

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
