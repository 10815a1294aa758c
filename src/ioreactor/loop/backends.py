"""Building a loop from a backend name: what every ``--poller`` flag does.

``new_loop(name)`` is ``EventLoop(name)`` -- every name of
:func:`~ioreactor.loop.poller.available_pollers` works there, io_uring's included -- plus
the completion loop's ring sizes as options (``entries``, ``buffers``, ``buffer_size``
for ``uring``: :func:`ioreactor.loop.uring.create_loop`). The io_uring package is
imported only when one of its names is asked for, so other programs never load ctypes;
where io_uring is missing or forbidden, asking for it raises ``UringUnavailable`` with
the reason, and the default stays epoll.
"""

from __future__ import annotations

from typing import Any

from ioreactor.loop.event_loop import EventLoop


def new_loop(backend: str | None = None, *, name: str = "loop", **options: Any) -> EventLoop:
    """The loop for ``backend`` (None: the best readiness poller of this OS)."""
    if backend == "uring":
        from ioreactor.loop.uring import create_loop

        return create_loop(name=name, **options)
    return EventLoop(backend, name=name, **options)
