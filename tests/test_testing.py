"""ioreactor.testing: the helpers users (and this suite) test their protocols with."""

from __future__ import annotations

import gc
import socket
import threading
import time

import pytest

from ioreactor.testing import LoopThread, open_fds

pytestmark = pytest.mark.timeout(60)


class Fatal(BaseException):
    """Not an Exception: the loop lets it through, as it does KeyboardInterrupt."""


def test_loop_runs_in_its_own_thread(loop_thread: LoopThread) -> None:
    ident = loop_thread.call(threading.get_ident)
    assert ident != threading.get_ident()
    assert ident == loop_thread._thread.ident
    assert loop_thread.call(loop_thread.loop.is_in_loop_thread)
    assert not loop_thread.loop.is_in_loop_thread()
    assert loop_thread.loop.running


def test_call_returns_the_result_or_raises_the_error(loop_thread: LoopThread) -> None:
    assert loop_thread.call(lambda a, b: a + b, 2, 3) == 5
    with pytest.raises(ZeroDivisionError):
        loop_thread.call(lambda: 1 / 0)
    assert loop_thread.call(lambda: "still running") == "still running"


def test_call_times_out_when_the_loop_is_blocked(loop_thread: LoopThread) -> None:
    gate = threading.Event()
    loop_thread.loop.call_soon_threadsafe(gate.wait, 30)
    try:
        with pytest.raises(TimeoutError, match="did not run"):
            loop_thread.call(lambda: None, timeout=0.1)
    finally:
        gate.set()


def test_wait_until(loop_thread: LoopThread) -> None:
    flag: list[bool] = []
    loop_thread.loop.call_soon_threadsafe(
        lambda: loop_thread.loop.call_later(0.05, flag.append, True)
    )
    assert loop_thread.wait_until(lambda: bool(flag), timeout=10)
    start = time.monotonic()
    assert not loop_thread.wait_until(lambda: False, timeout=0.1)
    assert time.monotonic() - start >= 0.1


def test_stop_closes_the_loop_and_call_after_stop_is_refused() -> None:
    lt = LoopThread("poll").start()
    lt.stop()
    assert lt.loop._closed
    lt.stop()  # idempotent
    with pytest.raises(RuntimeError, match="not running"):
        lt.call(lambda: None)


def test_start_then_stop_at_once_never_hangs() -> None:
    """stop() may land before the thread reaches run(); it must still stop it."""
    for _ in range(50):
        with LoopThread():
            pass


def test_an_error_that_kills_the_loop_surfaces_from_stop() -> None:
    lt = LoopThread().start()

    def fatal() -> None:
        raise Fatal("loop killed")

    lt.loop.call_soon_threadsafe(fatal)
    lt._thread.join(10)
    with pytest.raises(Fatal, match="loop killed"):
        lt.stop()


def test_open_fds_counts_this_process() -> None:
    gc.collect()  # sockets dropped by earlier tests close now, not mid-count
    before = open_fds()
    a, b = socket.socketpair()
    assert open_fds() == before + 2
    a.close()
    b.close()
    assert open_fds() == before
