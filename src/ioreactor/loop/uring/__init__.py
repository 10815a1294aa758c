"""io_uring for ioreactor: a minimal ring over ctypes and a readiness poller on top of it.

Stdlib only (``ctypes`` + ``mmap`` + the three syscalls). Importing this package never
touches the kernel; constructing a :class:`Ring` or :class:`UringPoller` raises
:class:`UringUnavailable` with the reason when io_uring is missing or forbidden.
"""

from ioreactor.loop.poller import register_backend
from ioreactor.loop.uring.poller import UringPoller
from ioreactor.loop.uring.ring import BufferRing, Ring, UringUnavailable

__all__ = ["BufferRing", "Ring", "UringPoller", "UringUnavailable", "install"]


def _edge_triggered() -> UringPoller:
    return UringPoller(edge_triggered=True)


def install() -> None:
    """Make ``uring`` and ``uring-et`` selectable by name (``create_poller``, ``--poller``).

    Registration is free: io_uring is first touched when a poller is created, so on a
    kernel without it the name exists and fails with the reason, and the default stays
    epoll (``available_pollers`` ranks extra backends last).
    """
    register_backend("uring", UringPoller)
    register_backend("uring-et", _edge_triggered)
