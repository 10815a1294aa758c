"""Fixtures of the io_uring tests of the loop layer: ``ring``, a fresh ring per test
(skipped where io_uring is unavailable). The connection-level tests of the suite run on
the completion loop through the suite-wide backends (``tests/conftest.py``)."""

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
