"""Apply skips.txt to CPython's asyncio tests collected here (see cpython_support)."""

from __future__ import annotations

import gc
import signal
from collections.abc import Iterator

import pytest
from cpython_support import read_skips

from support.process_state import ProcessState


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    entries = read_skips()
    for item in items:
        module = item.nodeid.split("::", 1)[0].rsplit("/", 1)[-1].removesuffix(".py")
        key = module + "::" + item.nodeid.split("::", 1)[-1]
        entry = entries.get(key)
        if entry is None:
            continue
        kind, reason = entry
        if kind == "skip":
            item.add_marker(pytest.mark.skip(reason=reason))
        else:
            item.add_marker(pytest.mark.xfail(reason=reason, strict=False))


@pytest.fixture(autouse=True)
def _collect_only_what_the_test_made(request: pytest.FixtureRequest) -> Iterator[None]:
    """The ``*_del_collect`` tests call ``gc.collect()`` from 100 finalizers: in a test
    process that has imported the whole suite each full collection walks every object of
    it (20 s a test here, against well under 1 s in CPython's own runner). Freezing what
    exists before the test leaves the collections the objects the test itself makes,
    which are the ones it is about."""
    if not request.node.name.endswith("_del_collect"):
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


@pytest.fixture(autouse=True)
def _runner_signals_back() -> Iterator[None]:
    """CPython's signal tests end with ``remove_signal_handler``, which leaves SIGINT at
    Python's default handler and other signals at SIG_DFL, as in CPython's own runner.
    Here SIGINT may have been ignored (a shell starts a background job so, and the
    runner's workers inherit it) and SIGALRM was pytest-timeout's: at SIG_DFL its timer
    would kill the worker. What the runner had comes back."""
    before = ProcessState.now()
    alarm = signal.getsignal(signal.SIGALRM)
    yield
    before.restore()
    if alarm is not None:
        signal.signal(signal.SIGALRM, alarm)
