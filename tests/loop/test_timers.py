"""Handles and the deadline heap, on a deterministic clock (``pop_due(now)`` takes the time)."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from ioreactor.loop.timers import Handle, TimerHandle, TimerQueue

pytestmark = pytest.mark.timeout(30)


def timer(queue: TimerQueue, when: float, log: list[Any], tag: Any, **kw: Any) -> TimerHandle:
    handle = TimerHandle(when, log.append, (tag,), queue, kw.get("interval"))
    queue.add(handle)
    return handle


def fire(queue: TimerQueue, now: float) -> None:
    for handle in queue.pop_due(now):
        if not handle.cancelled:
            handle.run()


def test_handle_runs_its_callback_with_args() -> None:
    got: list[tuple[int, int]] = []
    handle = Handle(lambda a, b: got.append((a, b)), (1, 2))
    handle.run()
    assert got == [(1, 2)]
    assert not handle.cancelled
    handle.cancel()
    assert handle.cancelled and "cancelled" in repr(handle)


def test_pop_due_in_deadline_order_with_fifo_ties() -> None:
    q = TimerQueue()
    log: list[str] = []
    timer(q, 3.0, log, "c")
    timer(q, 1.0, log, "a1")
    timer(q, 2.0, log, "b")
    timer(q, 1.0, log, "a2")
    assert q.next_deadline() == 1.0
    fire(q, 0.5)
    assert log == []
    fire(q, 2.0)
    assert log == ["a1", "a2", "b"]
    assert q.next_deadline() == 3.0
    fire(q, 10.0)
    assert log == ["a1", "a2", "b", "c"]
    assert q.next_deadline() is None
    assert len(q) == 0


def test_cancel_before_due_drops_the_timer() -> None:
    q = TimerQueue()
    log: list[str] = []
    first = timer(q, 1.0, log, "first")
    timer(q, 2.0, log, "second")
    first.cancel()
    first.cancel()  # idempotent: counted once
    assert len(q) == 1
    assert q.next_deadline() == 2.0  # the cancelled head is dropped on the way
    assert len(q._heap) == 1
    fire(q, 5.0)
    assert log == ["second"]


def test_cancel_from_inside_a_timer_callback() -> None:
    """A due batch is popped before any runs; a cancelled member must be skipped."""
    q = TimerQueue()
    log: list[str] = []
    victim = timer(q, 1.0, log, "victim")
    killer = TimerHandle(0.5, lambda: (log.append("killer"), victim.cancel()), (), q)
    q.add(killer)
    fire(q, 1.0)
    assert log == ["killer"]
    assert len(q) == 0


def test_periodic_timer_reschedules_from_its_schedule() -> None:
    q = TimerQueue()
    log: list[float] = []
    tick = TimerHandle(1.0, lambda: log.append(tick.when), (), q, interval=1.0)
    q.add(tick)
    fire(q, 1.05)  # slightly late: the next run stays on the 1 s grid
    assert tick.when == 2.0
    fire(q, 2.0)
    assert tick.when == 3.0
    assert len(log) == 2


def test_periodic_timer_that_falls_behind_runs_once_not_in_a_burst() -> None:
    q = TimerQueue()
    runs: list[float] = []
    tick = TimerHandle(1.0, lambda: runs.append(1), (), q, interval=1.0)
    q.add(tick)
    fire(q, 10.5)  # nine periods missed
    assert runs == [1]
    assert tick.when == pytest.approx(11.5), "next period counts from now, not a backlog"
    fire(q, 11.0)
    assert runs == [1]


def test_periodic_timer_cancelling_itself_stops() -> None:
    q = TimerQueue()
    runs: list[int] = []

    def tick() -> None:
        runs.append(1)
        if len(runs) == 3:
            handle.cancel()

    handle = TimerHandle(1.0, tick, (), q, interval=1.0)
    q.add(handle)
    for now in range(1, 10):
        fire(q, float(now))
    assert runs == [1, 1, 1]
    assert q.next_deadline() is None
    assert len(q) == 0 and q._heap == []


def test_cancelling_an_already_run_one_shot_does_not_skew_the_count() -> None:
    q = TimerQueue()
    log: list[str] = []
    done = timer(q, 1.0, log, "done")
    timer(q, 5.0, log, "pending")
    fire(q, 1.0)
    done.cancel()  # after it ran: not in the heap any more
    assert len(q) == 1
    fire(q, 5.0)
    assert log == ["done", "pending"]


def test_heap_is_compacted_after_many_cancels() -> None:
    q = TimerQueue()
    log: list[int] = []
    handles = [timer(q, float(i), log, i) for i in range(1000)]
    for h in handles[:900]:
        h.cancel()
    assert len(q) == 100
    timer(q, 1500.0, log, -1)  # the owning thread's next schedule rebuilds the heap
    assert len(q._heap) < 200, "cancelled entries outnumbering live ones must be dropped"
    fire(q, 2000.0)
    assert log == [*range(900, 1000), -1]
    assert len(q) == 0


def test_cancel_from_another_thread_leaves_the_heap_alone() -> None:
    # cancel() may run on any thread: it must not rebuild the heap under the loop's feet.
    q = TimerQueue()
    handles = [timer(q, float(i), [], i) for i in range(1000)]
    heap = q._heap
    worker = threading.Thread(target=lambda: [h.cancel() for h in handles])
    worker.start()
    worker.join()
    assert q._heap is heap and len(heap) == 1000
    assert len(q) == 0


def test_few_cancels_stay_lazy() -> None:
    q = TimerQueue()
    handles = [timer(q, float(i), [], i) for i in range(100)]
    for h in handles[:10]:
        h.cancel()
    assert len(q._heap) == 100  # O(1) cancel: no rebuild for a handful
    assert len(q) == 90
