"""io_uring for ioreactor: a minimal ring over ctypes, a readiness poller and a
completion-mode loop on top of it.

Stdlib only (``ctypes`` + ``mmap`` + the three syscalls). Importing this package never
touches the kernel; constructing a :class:`Ring`, a :class:`UringPoller` or a
:class:`UringEventLoop` raises :class:`UringUnavailable` with the reason when io_uring is
missing or forbidden.

Two ways to run a server on io_uring:

``uring`` / ``uring-et``   readiness pollers (:func:`install` registers the names):
                           ``EventLoop("uring")``; the kernel tells, Python does the I/O.
``uring-completion``       the completion-mode loop, :func:`create_loop`: the kernel does
                           accept/recv/send/shutdown/close, Python handles completions.
"""

from collections.abc import Callable

from ioreactor.loop.event_loop import EventLoop
from ioreactor.loop.poller import register_backend
from ioreactor.loop.uring.loop import LOOP_NAME, UringEventLoop, create_loop
from ioreactor.loop.uring.poller import UringPoller
from ioreactor.loop.uring.ring import BufferRing, Ring, UringUnavailable

__all__ = [
    "LOOP_FACTORIES",
    "LOOP_NAME",
    "BufferRing",
    "Ring",
    "UringEventLoop",
    "UringPoller",
    "UringUnavailable",
    "create_loop",
    "install",
    "new_loop",
]

#: Backend names that select a loop class rather than a poller: name -> factory(name=...).
LOOP_FACTORIES: dict[str, Callable[..., EventLoop]] = {LOOP_NAME: create_loop}


def new_loop(backend: str | None = None, *, name: str = "loop") -> EventLoop:
    """The loop a ``--poller`` value asks for: a completion-mode loop for
    ``uring-completion``, else ``EventLoop(backend)`` (None: the best poller, epoll)."""
    factory = LOOP_FACTORIES.get(backend or "")
    return factory(name=name) if factory is not None else EventLoop(backend, name=name)


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
