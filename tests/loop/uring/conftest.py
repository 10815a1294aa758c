"""Fixtures of the io_uring tests of the loop layer.

``ring``: a fresh ring per test. ``poller_name`` / ``loop`` / ``loop_thread`` (from
``support.uring``) override the suite-wide fixtures of ``tests/conftest.py`` for every
test in this directory -- including the core TCP tests that
``test_uring_conformance.py`` re-collects -- so they run on a completion-mode loop.
Everything skips where io_uring is unavailable.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ioreactor.loop.uring.ring import Ring, UringUnavailable
from support.uring import loop, loop_thread, poller_name

__all__ = ["loop", "loop_thread", "poller_name", "ring"]


@pytest.fixture
def ring() -> Iterator[Ring]:
    try:
        r = Ring(64)
    except UringUnavailable as exc:
        pytest.skip(f"io_uring unavailable here: {exc.strerror}")
    yield r
    r.close()
