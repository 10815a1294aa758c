"""Fixtures shared by the whole suite: one event loop per poller backend.

Any test that asks for ``poller_name``, ``loop`` or ``loop_thread`` runs once per
backend this OS offers (select, poll, epoll, epoll-et, and the io_uring completion loop
``uring`` where the kernel allows it), as the project requires:

``loop``         an :class:`EventLoop` driven by the test itself (``loop.run_once()``).
``loop_thread``  an :class:`ioreactor.testing.LoopThread`: the loop runs in a background
                 thread while the test drives blocking sockets; touch loop-owned objects
                 through ``loop_thread.call(fn, ...)``.

And ``pair``: a connected pair of non-blocking socketpair ends.

Every test must leave the runner's process as it found it (signal dispositions, blocked
signals, CPU affinity, environment: what children inherit): one that does not fails.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from ioreactor.loop.backends import new_loop
from ioreactor.loop.event_loop import EventLoop
from ioreactor.loop.poller import URING_POLLERS, available_pollers
from ioreactor.testing import LoopThread
from support.process_state import ProcessState


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


#: The process's state when the last test ended, and that test (see below).
_last_seen: list[tuple[str, ProcessState]] = []


@pytest.fixture(autouse=True)
def _process_state_kept(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fails a test that leaves what children inherit changed (and puts it back); and
    one that finds it changed since the last test ended (a module or class teardown, a
    fixture of wider scope)."""
    before = ProcessState.now()
    if _last_seen:
        previous, at_its_end = _last_seen.pop()
        changes = before.changes_since(at_its_end)
        if changes:
            at_its_end.restore()
            before = at_its_end
            pytest.fail(
                f"the process was changed after {previous} ended: " + "; ".join(changes),
                pytrace=False,
            )
    yield
    after = ProcessState.now()
    changes = after.changes_since(before)
    if changes:
        before.restore()
        after = before
    _last_seen.append((request.node.nodeid, after))
    if changes:
        pytest.fail("the test left the process changed: " + "; ".join(changes), pytrace=False)


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
