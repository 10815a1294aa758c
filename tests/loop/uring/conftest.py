"""The ``ring`` fixture: a fresh ring per test, skipped where io_uring is unavailable."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ioreactor.loop.uring.ring import Ring, UringUnavailable


@pytest.fixture
def ring() -> Iterator[Ring]:
    try:
        r = Ring(64)
    except UringUnavailable as exc:
        pytest.skip(f"io_uring unavailable here: {exc.strerror}")
    yield r
    r.close()
