"""EventLoopThread / EventLoopThreadPool: each loop lives on, and is owned by, its own thread."""

from __future__ import annotations

import gc
import threading
from collections.abc import Callable
from typing import TypeVar

import pytest

from ioreactor.loop.event_loop import EventLoop
from ioreactor.net.loop_thread import EventLoopThread, EventLoopThreadPool
from ioreactor.testing import open_fds

TIMEOUT = 30.0
T = TypeVar("T")


def run_on(loop: EventLoop, fn: Callable[[], T]) -> T:
    """Run ``fn()`` on ``loop``'s thread and return what it returned."""
    done = threading.Event()
    box: list[T] = []

    def invoke() -> None:
        box.append(fn())
        done.set()

    loop.call_soon_threadsafe(invoke)
    assert done.wait(TIMEOUT), "the loop did not run the callback"
    return box[0]


def test_loop_is_created_and_run_by_its_own_thread() -> None:
    started: list[tuple[int, bool]] = []
    thread = EventLoopThread(
        "io-test",
        on_start=lambda loop: started.append((threading.get_ident(), loop.is_in_loop_thread())),
    )
    loop = thread.start()
    try:
        ident, owned = run_on(loop, lambda: (threading.get_ident(), loop.is_in_loop_thread()))
        assert ident == thread.thread.ident != threading.get_ident()
        assert owned
        assert started == [(thread.thread.ident, True)], "on_start runs in the thread, first"
        assert not loop.is_in_loop_thread()
        with pytest.raises(RuntimeError):
            loop.assert_in_loop_thread()
    finally:
        thread.stop()
    assert not thread.thread.is_alive()


def test_stop_runs_the_work_queued_before_it() -> None:
    thread = EventLoopThread("io-test")
    loop = thread.start()
    ran: list[int] = []
    for i in range(100):
        loop.call_soon_threadsafe(ran.append, i)
    thread.stop()
    assert ran == list(range(100))
    assert not thread.thread.is_alive()


def test_a_loop_that_cannot_start_raises_in_the_caller() -> None:
    thread = EventLoopThread("io-test", poller="no-such-backend")
    with pytest.raises(RuntimeError, match="failed to start") as info:
        thread.start()
    assert isinstance(info.value.__cause__, ValueError)


def test_pool_without_threads_uses_the_base_loop() -> None:
    base = EventLoop(name="base")
    try:
        pool = EventLoopThreadPool(base, 0).start()
        assert pool.loops == [base]
        assert pool.next_loop() is base
        assert pool.loop_for_hash(12345) is base
        pool.stop()
    finally:
        base.close()


def test_pool_round_robin_hash_and_stop() -> None:
    base = EventLoop(name="base")
    pool = EventLoopThreadPool(base, 3, name="sub").start()
    try:
        loops = pool.loops
        assert len(set(map(id, loops))) == 3 and base not in loops
        assert [pool.next_loop() for _ in range(6)] == loops + loops
        assert pool.loop_for_hash(7) is pool.loop_for_hash(7) is loops[7 % 3]
        idents = {run_on(loop, threading.get_ident) for loop in loops}
        assert len(idents) == 3 and threading.get_ident() not in idents
        assert [t.thread.name for t in pool.threads] == ["sub-0", "sub-1", "sub-2"]
        threads = list(pool.threads)
    finally:
        pool.stop()
        base.close()
    assert not any(t.thread.is_alive() for t in threads)
    assert pool.loops == [base]


def test_loop_factory_builds_the_loop_in_its_thread() -> None:
    class CustomLoop(EventLoop):
        pass

    built_on: list[int] = []

    def factory(*, name: str) -> EventLoop:
        built_on.append(threading.get_ident())
        return CustomLoop(name=name)

    base = EventLoop(name="base")
    pool = EventLoopThreadPool(base, 2, name="custom", loop_factory=factory).start()
    try:
        assert all(type(loop) is CustomLoop for loop in pool.loops)
        assert [loop.name for loop in pool.loops] == ["custom-0", "custom-1"]
        assert built_on == [t.thread.ident for t in pool.threads]
    finally:
        pool.stop()
        base.close()


def test_a_failing_on_start_closes_the_loop_it_was_given() -> None:
    def fail(loop: EventLoop) -> None:
        raise RuntimeError("on_start failed")

    gc.collect()
    before = open_fds()
    for _ in range(5):
        thread = EventLoopThread("io-test", on_start=fail)
        with pytest.raises(RuntimeError, match="failed to start"):
            thread.start()
        thread.thread.join(5)
    assert open_fds() == before, "the loop's waker and poller fds are closed"
