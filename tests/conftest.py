"""Fixtures shared by the whole suite: one event loop per poller backend.

Any test that asks for ``poller_name``, ``loop`` or ``loop_thread`` runs once per
backend this OS offers (select, poll, epoll, epoll-et, and the io_uring completion loop
``uring`` where the kernel allows it), as the project requires:

``loop``         an :class:`EventLoop` driven by the test itself (``loop.run_once()``).
``loop_thread``  an :class:`ioreactor.testing.LoopThread`: the loop runs in a background
                 thread while the test drives blocking sockets; touch loop-owned objects
                 through ``loop_thread.call(fn, ...)``.

And ``pair``: a connected pair of non-blocking socketpair ends.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from ioreactor.loop.backends import new_loop
from ioreactor.loop.event_loop import EventLoop
from ioreactor.loop.poller import URING_POLLERS, available_pollers
from ioreactor.testing import LoopThread


def _uring_backends() -> list[str]:
    """``uring`` where io_uring works here; elsewhere its own tests say why not."""
    try:
        new_loop("uring").close()
    except (ImportError, OSError, ValueError):
        return []
    return ["uring"]


#: The readiness pollers of this OS, then the io_uring completion loop where it works
#: (the readiness pollers over io_uring have their own tests in tests/loop/uring).
BACKENDS = [n for n in available_pollers() if n not in URING_POLLERS] + _uring_backends()


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    """A connected pair of non-blocking Unix stream sockets, closed after the test."""
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    yield a, b
    a.close()
    b.close()


@pytest.fixture(params=BACKENDS)
def poller_name(request: pytest.FixtureRequest) -> str:
    """Each backend available here, one test run per backend."""
    name: str = request.param
    return name


@pytest.fixture
def loop(poller_name: str) -> Iterator[EventLoop]:
    """An event loop on ``poller_name``, driven from the test thread."""
    ev = new_loop(poller_name, name=f"test-{poller_name}")
    yield ev
    ev.close()


@pytest.fixture
def loop_thread(poller_name: str) -> Iterator[LoopThread]:
    """An event loop on ``poller_name`` running in a background thread."""
    with LoopThread(poller_name, name=f"test-{poller_name}") as lt:
        yield lt
