"""io_uring for ioreactor: a minimal ring over ctypes, a readiness poller and the
completion-mode poller.

Stdlib only (``ctypes`` + ``mmap`` + the three syscalls). Importing this package never
touches the kernel; constructing a :class:`Ring`, a :class:`UringPoller` or a
:class:`CompletionPoller` raises :class:`UringUnavailable` with the reason when io_uring
is missing or forbidden.

Two ways to run a server on io_uring, both known by name to ``EventLoop(name)`` and
every ``--poller`` flag (``ioreactor.loop.poller.URING_POLLERS``; this package is
imported only when one of them is built):

``uring``                  completion mode (:func:`create_loop` to size the ring): the
                           kernel does accept/recv/send/shutdown/close, Python handles
                           completions; the net layer's channels for it live in
                           :mod:`ioreactor.net.uring`.
``uring-poll`` / ``-et``   readiness pollers: the kernel tells, Python does the I/O.
"""

from ioreactor.loop.uring.completion import CompletionPoller
from ioreactor.loop.uring.loop import LOOP_NAME, create_loop
from ioreactor.loop.uring.poller import UringPoller
from ioreactor.loop.uring.ring import BufferRing, Ring, UringUnavailable

__all__ = [
    "LOOP_NAME",
    "BufferRing",
    "CompletionPoller",
    "Ring",
    "UringPoller",
    "UringUnavailable",
    "create_loop",
]
