"""Fixtures of the io_uring tests.

``ring``: a fresh ring per test. ``poller_name`` / ``loop`` / ``loop_thread`` override
the suite-wide fixtures of ``tests/conftest.py`` for every test in this directory --
including the core TCP tests that ``test_uring_conformance.py`` re-collects -- so they run
on a completion-mode loop. Everything skips where io_uring is unavailable.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from uring_support import UringLoopThread, make_loop

from ioreactor.loop.uring.loop import LOOP_NAME, UringEventLoop
from ioreactor.loop.uring.ring import Ring, UringUnavailable


@pytest.fixture
def ring() -> Iterator[Ring]:
    try:
        r = Ring(64)
    except UringUnavailable as exc:
        pytest.skip(f"io_uring unavailable here: {exc.strerror}")
    yield r
    r.close()


@pytest.fixture
def poller_name() -> str:
    return LOOP_NAME


@pytest.fixture
def loop() -> Iterator[UringEventLoop]:
    """A completion-mode loop driven (and closed) by the test thread."""
    ev = make_loop()
    yield ev
    ev.close()


@pytest.fixture
def loop_thread() -> Iterator[UringLoopThread]:
    """A completion-mode loop running in a background thread."""
    with UringLoopThread() as lt:
        yield lt
