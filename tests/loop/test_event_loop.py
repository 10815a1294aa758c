"""The event loop over every poller: callbacks, threads, timers, lag, signals, stopping.

Most tests drive the loop from the test thread with ``run_once``; the ones about other
threads run it in a background thread (``LoopThread`` or a plain thread). Timing is only
ever used for liveness (generous deadlines), never asserted as performance.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable

import pytest

from ioreactor.loop.backends import new_loop
from ioreactor.loop.channel import Channel
from ioreactor.loop.event_loop import LAG_WINDOW, SCRATCH_SIZE, EventLoop
from ioreactor.loop.poller import READ, WRITE
from ioreactor.testing import LoopThread, run_until

pytestmark = pytest.mark.timeout(30)

LIVENESS = 10.0  # seconds: how long anything that should happen "soon" may take


# -- call_soon ---------------------------------------------------------------------------


def test_call_soon_runs_in_fifo_order_on_the_next_iteration(loop: EventLoop) -> None:
    order: list[object] = []
    for i in range(5):
        loop.call_soon(order.append, i)
    assert order == []
    loop.run_once(0)
    assert order == [0, 1, 2, 3, 4]


def test_call_soon_from_a_callback_waits_for_the_next_iteration(loop: EventLoop) -> None:
    order: list[str] = []

    def first() -> None:
        order.append("first")
        loop.call_soon(order.append, "nested")

    loop.call_soon(first)
    loop.call_soon(order.append, "second")
    loop.run_once(0)
    assert order == ["first", "second"]
    start = time.monotonic()
    loop.run_once(None)  # a queued callback means: do not sleep
    assert order == ["first", "second", "nested"]
    assert time.monotonic() - start < LIVENESS


def test_cancelled_handle_does_not_run(loop: EventLoop) -> None:
    ran: list[int] = []
    handle = loop.call_soon(ran.append, 1)
    loop.call_soon(ran.append, 2)
    handle.cancel()
    loop.run_once(0)
    assert ran == [2]
    assert "cancelled" in repr(handle)


def test_exceptions_in_callbacks_are_logged_and_the_loop_goes_on(
    loop: EventLoop, caplog: pytest.LogCaptureFixture
) -> None:
    ran: list[str] = []

    def boom() -> None:
        raise RuntimeError("boom in callback")

    def timer_boom() -> None:
        raise RuntimeError("boom in timer")

    loop.call_soon(boom)
    loop.call_soon(ran.append, "after")
    loop.call_later(0, timer_boom)
    loop.call_later(0, ran.append, "timer after")
    with caplog.at_level(logging.ERROR, logger="ioreactor.loop"):
        run_until(loop, lambda: len(ran) == 2)
    assert sorted(ran) == ["after", "timer after"]
    messages = "\n".join(r.getMessage() for r in caplog.records)
    assert "unhandled error in callback" in messages
    assert any("boom in callback" in (r.exc_text or "") for r in caplog.records)
    assert any("boom in timer" in (r.exc_text or "") for r in caplog.records)


# -- fds ---------------------------------------------------------------------------------


def test_watch_modify_unwatch(loop: EventLoop) -> None:
    a, b = socket.socketpair()
    a.setblocking(False)
    masks: list[int] = []
    try:
        base = loop.watched_fds()
        loop.watch(a.fileno(), READ, masks.append)
        assert loop.watched_fds() == base + 1
        with pytest.raises(ValueError, match="already watched"):
            loop.watch(a.fileno(), READ, masks.append)
        b.send(b"x")
        run_until(loop, lambda: bool(masks))
        assert masks[0] & READ
        a.recv(1)
        masks.clear()
        loop.modify(a.fileno(), WRITE)
        run_until(loop, lambda: bool(masks))
        assert masks[0] & WRITE
        loop.unwatch(a.fileno())
        loop.unwatch(a.fileno())  # idempotent
        masks.clear()
        b.send(b"y")
        loop.run_once(0.05)
        assert masks == []
        assert loop.watched_fds() == base
    finally:
        a.close()
        b.close()


def test_fd_handler_exception_is_logged_and_loop_survives(
    loop: EventLoop, caplog: pytest.LogCaptureFixture
) -> None:
    a, b = socket.socketpair()
    ran: list[bool] = []

    def bad(mask: int) -> None:
        a.recv(10)
        raise ValueError("bad handler")

    try:
        loop.watch(a.fileno(), READ, bad)
        b.send(b"x")
        loop.call_later(0.01, ran.append, True)
        with caplog.at_level(logging.ERROR, logger="ioreactor.loop"):
            run_until(loop, lambda: bool(ran))
        assert any(f"handler of fd {a.fileno()}" in r.getMessage() for r in caplog.records)
        loop.unwatch(a.fileno())
    finally:
        a.close()
        b.close()


class ReadsOneByte(Channel):
    """A channel as a connection is one: the loop calls its method, no callback object."""

    __slots__ = ("masks", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.masks: list[int] = []

    def handle_events(self, mask: int) -> bool:
        self.masks.append(mask)
        if self.sock.recv(1) == b"!":
            raise ValueError("bad channel")
        return True


def test_watch_channel_calls_its_handle_events(
    loop: EventLoop, caplog: pytest.LogCaptureFixture
) -> None:
    a, b = socket.socketpair()
    channel = ReadsOneByte(a)
    try:
        base = loop.watched_fds()
        loop.watch_channel(a.fileno(), READ, channel)
        assert loop.watched_fds() == base + 1
        with pytest.raises(ValueError, match="already watched"):
            loop.watch(a.fileno(), READ, channel.masks.append)
        b.send(b"x")
        run_until(loop, lambda: bool(channel.masks))
        assert channel.masks[0] & READ
        b.send(b"!")  # its exception is logged; the loop and the channel go on
        with caplog.at_level(logging.ERROR, logger="ioreactor.loop"):
            run_until(loop, lambda: len(channel.masks) == 2)
        assert any(f"handler of fd {a.fileno()}" in r.getMessage() for r in caplog.records)
        b.send(b"y")
        run_until(loop, lambda: len(channel.masks) == 3)
        loop.unwatch(a.fileno())
        b.send(b"z")
        loop.run_once(0.05)
        assert len(channel.masks) == 3 and loop.watched_fds() == base
    finally:
        a.close()
        b.close()


def test_scratch_buffer_and_clock(loop: EventLoop) -> None:
    assert len(loop.scratch) == SCRATCH_SIZE == len(loop.scratch_view)
    t0 = loop.time()
    before = loop.now
    time.sleep(0.002)
    loop.run_once(0)
    assert loop.now > before
    assert loop.time() >= t0
    assert loop.poller.name in repr(loop)


# -- threads -----------------------------------------------------------------------------


def test_call_soon_threadsafe_wakes_a_blocked_poll(loop: EventLoop) -> None:
    ran: list[int] = []
    main = threading.get_ident()
    waker = threading.Timer(0.05, lambda: loop.call_soon_threadsafe(ran.append, main))
    waker.start()
    try:
        loop.run_once(None)  # no timers: would block forever without the eventfd wakeup
        if not ran:
            loop.run_once(0)
    finally:
        waker.join()
    assert ran == [main]


def test_wakeup_racing_with_the_drain_is_not_lost(poller_name: str) -> None:
    """A wakeup landing while the loop drains its eventfd must not be swallowed.

    The race needs one thread to call ``call_soon_threadsafe`` between two statements of
    the loop thread; a real scheduler shows it only now and then, so the drain is wrapped
    to make the other thread's call land exactly there, every time.
    """
    with LoopThread(poller_name) as lt:
        loop = lt.loop
        waker = loop._waker
        real_drain = waker.drain
        raced = threading.Event()

        def drain_with_a_racing_wakeup() -> None:
            waker.drain = real_drain  # type: ignore[method-assign]
            loop.call_soon_threadsafe(lambda: None)  # "another thread" wakes the loop now
            real_drain()
            raced.set()

        waker.drain = drain_with_a_racing_wakeup  # type: ignore[method-assign]
        loop.wakeup()
        assert raced.wait(LIVENESS)
        time.sleep(0.05)  # the loop goes back to sleep in poll()
        done = threading.Event()
        loop.call_soon_threadsafe(done.set)
        woke = done.wait(LIVENESS)
        if not woke:
            waker.wake()  # unstick the loop so the fixture can stop it
        assert woke, "call_soon_threadsafe did not wake the loop: the wakeup was lost"


def test_many_threads_hand_work_to_the_loop(loop_thread: LoopThread) -> None:
    loop = loop_thread.loop
    results: list[int] = []
    threads_seen: set[int] = set()
    per_thread = 200

    def record(i: int) -> None:
        threads_seen.add(threading.get_ident())
        results.append(i)

    def producer(base: int) -> None:
        for i in range(per_thread):
            loop.run_in_loop(record, base + i)
            if i % 50 == 0:
                time.sleep(0.001)

    producers = [threading.Thread(target=producer, args=(k * per_thread,)) for k in range(4)]
    for t in producers:
        t.start()
    for t in producers:
        t.join(LIVENESS)
    assert loop_thread.wait_until(lambda: len(results) == 4 * per_thread)
    assert sorted(results) == list(range(4 * per_thread))
    assert threads_seen == {loop_thread._thread.ident}


def test_run_in_loop_runs_inline_on_the_loop_thread(loop: EventLoop) -> None:
    ran: list[str] = []
    loop.run_in_loop(ran.append, "inline")
    assert ran == ["inline"]
    assert loop.is_in_loop_thread()
    loop.assert_in_loop_thread()
    outcome: list[BaseException] = []

    def other() -> None:
        try:
            loop.assert_in_loop_thread()
        except RuntimeError as exc:
            outcome.append(exc)

    t = threading.Thread(target=other)
    t.start()
    t.join()
    assert outcome and "call_soon_threadsafe" in str(outcome[0])


def test_timer_added_from_another_thread_runs_on_the_loop(loop_thread: LoopThread) -> None:
    fired = threading.Event()
    idents: list[int] = []

    def on_timer() -> None:
        idents.append(threading.get_ident())
        fired.set()

    loop_thread.loop.call_later(0.01, on_timer)
    assert fired.wait(LIVENESS)
    assert idents == [loop_thread._thread.ident]


def test_stop_from_another_thread(loop: EventLoop) -> None:
    stopper = threading.Timer(0.05, loop.stop)
    stopper.start()
    loop.run()  # returns only because of stop()
    stopper.join()
    assert not loop.running


def test_stop_before_run_is_not_lost(poller_name: str) -> None:
    """stop() that lands before run() starts (a thread not scheduled yet) still stops it."""
    loop = new_loop(poller_name)
    loop.stop()
    t = threading.Thread(target=loop.run)
    t.start()
    t.join(LIVENESS)
    if t.is_alive():
        loop.stop()
        t.join(LIVENESS)
        pytest.fail("run() ignored a stop() issued before it started")
    loop.close()


def test_run_twice_and_close_running_are_refused(loop: EventLoop) -> None:
    errors: list[Exception] = []

    def inside() -> None:
        for fn in (loop.run, loop.close):
            try:
                fn()
            except RuntimeError as exc:
                errors.append(exc)
        loop.stop()

    loop.call_soon(inside)
    loop.run()
    assert [str(e) for e in errors] == [
        f"{loop!r} is already running",
        "cannot close a running loop",
    ]
    loop.close()
    loop.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        loop.run()


# -- timers ------------------------------------------------------------------------------


def test_timers_run_in_deadline_order(loop: EventLoop) -> None:
    order: list[str] = []
    now = loop.time()
    loop.call_later(0.03, order.append, "later 30ms")
    loop.call_at(now + 0.01, order.append, "at 10ms")
    loop.call_later(0.02, order.append, "later 20ms")
    loop.call_later(0.01, order.append, "later 10ms (tie: FIFO)")
    loop.call_later(0, order.append, "now")
    run_until(loop, lambda: len(order) == 5)
    assert order == ["now", "at 10ms", "later 10ms (tie: FIFO)", "later 20ms", "later 30ms"]


def test_timer_does_not_fire_early(loop: EventLoop) -> None:
    fired: list[float] = []
    start = loop.time()
    loop.call_later(0.05, lambda: fired.append(loop.time()))
    run_until(loop, lambda: bool(fired))
    assert fired[0] - start >= 0.05


def test_call_every_repeats_until_cancelled_from_its_own_callback(loop: EventLoop) -> None:
    runs: list[int] = []

    def tick() -> None:
        runs.append(loop._iterations)
        if len(runs) == 3:
            handle.cancel()

    handle = loop.call_every(0.005, tick)
    run_until(loop, lambda: len(runs) == 3)
    for _ in range(5):
        loop.run_once(0.01)
    assert len(runs) == 3
    assert len(loop._timers) == 0
    with pytest.raises(ValueError, match="interval must be > 0"):
        loop.call_every(0, tick)


def test_cancel_before_run_and_from_inside_another_timer(loop: EventLoop) -> None:
    ran: list[str] = []
    victim = loop.call_later(0.01, ran.append, "victim")  # due in the same batch
    doomed = loop.call_later(0.005, ran.append, "cancelled before run")
    doomed.cancel()

    def killer() -> None:
        ran.append("killer")
        victim.cancel()

    loop.call_later(0.001, killer)
    time.sleep(0.02)  # both due when the loop next looks
    loop.run_once(0)
    loop.run_once(0)
    assert ran == ["killer"]


def test_periodic_timer_that_falls_behind_runs_once_not_in_a_burst(loop: EventLoop) -> None:
    iterations: list[int] = []
    handle = loop.call_every(0.01, lambda: iterations.append(loop._iterations))
    loop.call_soon(time.sleep, 0.15)  # the loop misses ~15 periods
    run_until(loop, lambda: len(iterations) >= 3)
    handle.cancel()
    assert len(iterations) == len(set(iterations)), "several runs in one iteration: a burst"


def test_many_cancelled_timers_do_not_stay_in_the_heap(loop: EventLoop) -> None:
    handles = [loop.call_later(60 + i, lambda: None) for i in range(1000)]
    keep = handles[::100]
    for h in handles:
        if h not in keep:
            h.cancel()
    assert len(loop._timers) == len(keep)
    assert len(loop._timers._heap) < 200, "cancelled timers should be compacted away"
    for h in keep:
        h.cancel()
    loop.run_once(0)
    assert loop._timers.next_deadline() is None


# -- lag ---------------------------------------------------------------------------------


def test_lag_statistics(loop: EventLoop) -> None:
    empty = loop.lag()
    assert empty.iterations == 0 and empty.p99 == 0.0 and empty.last == 0.0
    loop.slow_iteration = 10.0
    for _ in range(5):
        loop.run_once(0)
    loop.call_soon(time.sleep, 0.03)
    loop.run_once(0)
    lag = loop.lag()
    assert lag.iterations == 6
    assert lag.last >= 0.03
    assert lag.max >= lag.p99 >= 0.03
    assert lag.slow_iterations == 0
    for _ in range(LAG_WINDOW + 10):
        loop.run_once(0)
    assert loop.lag().iterations == LAG_WINDOW + 16
    assert len(loop._lag_recent) == LAG_WINDOW
    assert loop.lag().max >= 0.03  # the all-time max survives the window


def test_slow_iteration_is_logged_once_a_second(
    loop: EventLoop, caplog: pytest.LogCaptureFixture
) -> None:
    loop.slow_iteration = 0.01
    with caplog.at_level(logging.WARNING, logger="ioreactor.loop"):
        for _ in range(3):
            loop.call_soon(time.sleep, 0.02)
            loop.run_once(0)
    warnings = [r for r in caplog.records if "event loop blocked" in r.getMessage()]
    assert len(warnings) == 1
    assert "run_in_pool" in warnings[0].getMessage()
    assert loop.lag().slow_iterations == 3


# -- pools and signals ---------------------------------------------------------------------


def test_run_in_pool_delivers_on_done_on_the_loop_thread(loop: EventLoop) -> None:
    done: list[tuple[int, int]] = []
    worker_threads: list[int] = []

    def work(x: int) -> int:
        worker_threads.append(threading.get_ident())
        time.sleep(0.01)
        return x * 2

    future = loop.run_in_pool(
        work, 21, on_done=lambda f: done.append((f.result(), threading.get_ident()))
    )
    run_until(loop, lambda: bool(done))
    assert done == [(42, threading.get_ident())]
    assert worker_threads and worker_threads[0] != threading.get_ident()
    assert future.result() == 42


def test_run_in_pool_error_reaches_on_done(loop: EventLoop) -> None:
    errors: list[BaseException | None] = []
    loop.run_in_pool(int, "not a number", on_done=lambda f: errors.append(f.exception()))
    run_until(loop, lambda: bool(errors))
    assert isinstance(errors[0], ValueError)


def test_run_in_pool_process_kind(loop: EventLoop) -> None:
    results: list[int] = []
    loop.run_in_pool(pow, 3, 4, kind="process", on_done=lambda f: results.append(f.result()))
    run_until(loop, lambda: bool(results), timeout=20)
    assert results == [81]
    assert loop._pools["process"] is not None


def test_add_signal_handler_runs_on_the_loop(loop: EventLoop) -> None:
    assert threading.current_thread() is threading.main_thread()
    previous = signal.getsignal(signal.SIGUSR1)
    got: list[str] = []
    loop.add_signal_handler(signal.SIGUSR1, got.append, "usr1")
    try:
        os.kill(os.getpid(), signal.SIGUSR1)
        run_until(loop, lambda: bool(got))
        assert got == ["usr1"]
    finally:
        loop.remove_signal_handler(signal.SIGUSR1)
    assert signal.getsignal(signal.SIGUSR1) is previous


def test_signal_wakes_a_loop_blocked_in_run(loop: EventLoop) -> None:
    loop.add_signal_handler(signal.SIGUSR1, loop.stop)
    killer = threading.Timer(0.05, os.kill, args=(os.getpid(), signal.SIGUSR1))
    killer.start()
    try:
        loop.run()
    finally:
        killer.join()
    assert not loop.running
    previous = loop._signals[signal.SIGUSR1]
    loop.close()  # restores the previous handler
    assert signal.getsignal(signal.SIGUSR1) is previous


def test_wakeup_after_close_writes_to_no_reused_fd(poller_name: str) -> None:
    """A late call_soon_threadsafe (a pool job finishing after close) must not write the
    wakeup counter into whatever file now has the closed eventfd's number."""
    a, b = socket.socketpair()
    loop = new_loop(poller_name)
    waker_fd = loop._waker.fd
    loop.close()
    os.dup2(b.fileno(), waker_fd)  # the fd number is reused by an unrelated socket
    try:
        done = threading.Event()
        t = threading.Thread(target=lambda: (loop.call_soon_threadsafe(print), done.set()))
        t.start()
        t.join(LIVENESS)
        assert done.is_set()
        a.setblocking(False)
        with pytest.raises(BlockingIOError):
            a.recv(64)  # nothing arrived on the unrelated socket
    finally:
        os.close(waker_fd)
        a.close()
        b.close()


def test_an_event_for_an_fd_unwatched_earlier_in_the_batch_is_not_delivered(
    loop: EventLoop,
) -> None:
    """A callback closes another watched socket, and a new socket gets the freed fd
    number and is watched in the same iteration: the rest of the poll's batch still
    holds the old socket's event, which must not reach the new socket's callback (a
    connector would read it as a completed connect)."""
    pairs = [socket.socketpair(), socket.socketpair()]
    replacement: list[socket.socket] = []
    stale: list[int] = []

    def readable(index: int) -> Callable[[int], None]:
        def callback(mask: int) -> None:
            pairs[index][0].recv(1)
            if replacement:
                return
            # Whichever is reported first closes the other one, still in the batch.
            victim = pairs[1 - index][0]
            number = victim.fileno()
            loop.unwatch(number)
            victim.close()
            sock, other = socket.socketpair()  # the lowest free number: the one freed
            replacement.extend((sock, other))
            assert sock.fileno() == number
            loop.watch(number, READ, stale.append)

        return callback

    for i, (sock, peer) in enumerate(pairs):
        loop.watch(sock.fileno(), READ, readable(i))
        peer.send(b"x")
    time.sleep(0.05)  # both readable before the poll
    for _ in range(3):
        loop.run_once(0.05)
    assert replacement, "a callback ran"
    assert stale == [], "the new socket got the old socket's event"
    loop.unwatch(replacement[0].fileno())
    for sock, peer in pairs:
        if sock.fileno() >= 0:
            loop.unwatch(sock.fileno())
        sock.close()
        peer.close()
    for sock in replacement:
        sock.close()
