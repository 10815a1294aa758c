"""io_uring for ioreactor: a minimal ring over ctypes and a readiness poller on top of it.

Stdlib only (``ctypes`` + ``mmap`` + the three syscalls). Importing this package never
touches the kernel; constructing a :class:`Ring` raises :class:`UringUnavailable` with the
reason when io_uring is missing or forbidden.
"""

from ioreactor.loop.uring.ring import BufferRing, Ring, UringUnavailable

__all__ = ["BufferRing", "Ring", "UringUnavailable"]
