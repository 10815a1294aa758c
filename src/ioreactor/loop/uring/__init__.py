"""io_uring for ioreactor: a minimal ring over ctypes, a readiness poller and a
completion-mode loop on top of it.

Stdlib only (``ctypes`` + ``mmap`` + the three syscalls). Importing this package never
touches the kernel; constructing a :class:`Ring`, a :class:`UringPoller` or a
:class:`UringEventLoop` raises :class:`UringUnavailable` with the reason when io_uring is
missing or forbidden.

Two ways to run a server on io_uring:

``uring``                  the completion-mode loop, :func:`create_loop`: the kernel does
                           accept/recv/send/shutdown/close, Python handles completions.
``uring-poll`` / ``-et``   readiness pollers (:func:`install` registers the names):
                           the kernel tells, Python does the I/O.

Programs select them by name through :func:`ioreactor.loop.backends.new_loop`.
"""

from ioreactor.loop.poller import register_backend
from ioreactor.loop.uring.loop import LOOP_NAME, UringEventLoop, create_loop
from ioreactor.loop.uring.poller import UringPoller
from ioreactor.loop.uring.ring import BufferRing, Ring, UringUnavailable

__all__ = [
    "LOOP_NAME",
    "BufferRing",
    "Ring",
    "UringEventLoop",
    "UringPoller",
    "UringUnavailable",
    "create_loop",
    "install",
]


def _edge_triggered() -> UringPoller:
    return UringPoller(edge_triggered=True)


def install() -> None:
    """Make the readiness pollers ``uring-poll`` and ``uring-poll-et`` known to
    ``create_poller`` (``new_loop`` needs no registration).

    Registration is free: io_uring is first touched when a poller is created, so on a
    kernel without it the name exists and fails with the reason, and the default stays
    epoll (``available_pollers`` ranks extra backends last).
    """
    register_backend("uring-poll", UringPoller)
    register_backend("uring-poll-et", _edge_triggered)
