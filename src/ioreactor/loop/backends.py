"""Choosing an I/O backend by name: a poller under the reactor loop, or a whole loop.

Readiness backends (``select``, ``poll``, ``epoll``, ``epoll-et``, ``kqueue``) are pollers
under :class:`EventLoop`. io_uring comes in two forms: ``uring`` is the completion-mode
loop (the kernel does accept/recv/send/close; a subclass of :class:`EventLoop`), and
``uring-poll`` / ``uring-poll-et`` are readiness pollers over io_uring. The io_uring
package is imported only when one of its names is asked for, so other programs never
load ctypes; where io_uring is missing or forbidden, asking for it raises
``UringUnavailable`` with the reason, and the default stays epoll.

Every ``--poller`` flag takes :func:`backend_names` and builds its loop with
:func:`new_loop`.
"""

from __future__ import annotations

import sys
from typing import Any

from ioreactor.loop.event_loop import EventLoop
from ioreactor.loop.poller import available_pollers

#: Backend names served by the io_uring package (Linux only).
URING_BACKENDS = ("uring", "uring-poll", "uring-poll-et") if sys.platform == "linux" else ()


def backend_names() -> list[str]:
    """Every backend name :func:`new_loop` accepts here, the default first."""
    names = available_pollers()
    return names + [n for n in URING_BACKENDS if n not in names]


def new_loop(backend: str | None = None, *, name: str = "loop", **options: Any) -> EventLoop:
    """The loop for ``backend`` (None: the best readiness poller of this OS)."""
    if backend in URING_BACKENDS:
        from ioreactor.loop import uring

        if backend == "uring":
            return uring.create_loop(name=name, **options)
        poller = uring.UringPoller(edge_triggered=backend == "uring-poll-et")
        return EventLoop(poller, name=name, **options)
    if backend is not None and backend not in available_pollers():
        raise ValueError(f"unknown backend {backend!r}; available here: {backend_names()}")
    return EventLoop(backend, name=name, **options)
