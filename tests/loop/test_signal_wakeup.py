"""A loop with signal handlers is woken by every signal, even one its poll did not see."""

from __future__ import annotations

import signal
import threading
import time

from ioreactor.loop.event_loop import EventLoop

#: Liveness bound: a loop whose poll is never woken sleeps this long.
SLEEP = 15.0


def wakeup_fd() -> int:
    fd = signal.set_wakeup_fd(-1)
    signal.set_wakeup_fd(fd)
    return fd


def test_the_wakeup_fd_is_the_loops_while_it_has_handlers_then_restored(
    loop: EventLoop,
) -> None:
    before = wakeup_fd()
    loop.add_signal_handler(signal.SIGUSR1, lambda: None)
    loop.add_signal_handler(signal.SIGUSR2, lambda: None)
    try:
        installed = wakeup_fd()
        assert installed != before and installed >= 0
        loop.remove_signal_handler(signal.SIGUSR1)
        assert wakeup_fd() == installed, "still installed while a handler is left"
    finally:
        loop.remove_signal_handler(signal.SIGUSR2)
    assert wakeup_fd() == before


def test_a_signal_taken_by_another_thread_wakes_the_poll(loop: EventLoop) -> None:
    # The kernel may deliver a process-directed signal to any thread that does not block
    # it; the C handler then runs there and the main thread's poll is not interrupted --
    # the same state as a signal landing just before epoll_wait. The loop must still run
    # the handler at once, not at its next unrelated event.
    got: list[str] = []
    loop.add_signal_handler(signal.SIGUSR1, got.append, "usr1")

    def helper() -> None:
        time.sleep(0.3)
        signal.pthread_kill(threading.get_ident(), signal.SIGUSR1)

    thread = threading.Thread(target=helper, daemon=True)
    thread.start()  # created before the main thread blocks the signal: it takes it
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
    try:
        start = time.monotonic()
        while not got and time.monotonic() - start < SLEEP:
            loop.run_once(SLEEP)
        waited = time.monotonic() - start
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        loop.remove_signal_handler(signal.SIGUSR1)
        thread.join(SLEEP)
    assert got == ["usr1"]
    assert waited < SLEEP / 2, "the poll slept through the signal"
