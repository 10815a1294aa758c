"""Every command unwinds on SIGTERM, SIGHUP and SIGINT: its clean-up runs.

Python's default for SIGTERM and SIGHUP ends the process where it stands: no ``finally``
block, no ``with`` exit. A lab or a benchmark that started servers in their own process
groups would leave them running, orphaned and listening (``timeout 60 ioreactor lab
c10k`` did). While a command runs, :func:`unwinding_on_stop_signals` turns the first stop
signal into an exception raised in the main thread -- ``KeyboardInterrupt`` for SIGINT,
:class:`Stopped` for the others -- so the clean-up on the way out stops those processes.
Further stop signals are ignored while it does (it is bounded by its own timeouts), so a
second Ctrl-C cannot cut it short; SIGKILL still can.

A signal ignored when the command started (``nohup``, a background job of a script)
stays ignored. Servers install their own handlers on their loops (graceful stop), which
take over from these for the signals they handle.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

#: The signals a command unwinds on.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)


class Stopped(SystemExit):
    """Raised in the main thread by a stop signal; its code is the shell's ``128 + N``."""

    def __init__(self, signum: int) -> None:
        super().__init__(128 + signum)
        self.signum = signum

    def __str__(self) -> str:
        return f"stopped by {signal.Signals(self.signum).name}"


@contextmanager
def unwinding_on_stop_signals() -> Iterator[None]:
    """Within the block, the first stop signal raises; the previous handlers come back."""
    unwinding = False

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal unwinding
        if unwinding:
            return  # the clean-up of the first one is running
        unwinding = True
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        raise Stopped(signum)

    previous = {}
    for sig in STOP_SIGNALS:
        if signal.getsignal(sig) is not signal.SIG_IGN:
            previous[sig] = signal.signal(sig, stop)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            if signal.getsignal(sig) is stop:  # a server may have put its own in place
                signal.signal(sig, handler)
