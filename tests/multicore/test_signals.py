"""Stop signals: a signal wakes the loop even when no poll was interrupted."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable

from ioreactor.loop.event_loop import EventLoop
from ioreactor.multicore.signals import StopSignals

#: Liveness bound: a loop whose poll is never woken sleeps this long per iteration.
SLEEP = 15.0


def signal_during_poll(sig: int, delay: float = 0.3) -> threading.Thread:
    """In ``delay`` s, deliver ``sig`` to a helper thread while the main thread (which
    blocks it) sleeps in its poll: the C-level handler runs in the helper, and the poll is
    not interrupted -- the same as a signal landing just before ``epoll_wait``."""

    def helper() -> None:
        time.sleep(delay)
        signal.pthread_kill(threading.get_ident(), sig)

    thread = threading.Thread(target=helper, daemon=True)
    thread.start()  # created before the main thread blocks sig: the helper takes it
    return thread


def run_until(loop: EventLoop, done: Callable[[], bool]) -> float:
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1, signal.SIGUSR2})
    try:
        start = time.monotonic()
        while not done() and time.monotonic() - start < SLEEP:
            loop.run_once(SLEEP)
        return time.monotonic() - start
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)


def test_a_signal_handled_off_the_poll_still_wakes_the_loop(loop: EventLoop) -> None:
    got: list[str] = []
    stops = StopSignals(
        loop,
        graceful=lambda: got.append("graceful"),
        force=lambda: got.append("force"),
        graceful_signals=(signal.SIGUSR1,),
        force_signals=(signal.SIGUSR2,),
    )
    try:
        helper = signal_during_poll(signal.SIGUSR1)
        assert run_until(loop, lambda: len(got) == 1) < SLEEP / 2, "the poll slept through it"
        assert got == ["graceful"] and stops.stopping and not stops.forced
        helper.join(SLEEP)
        signal_during_poll(signal.SIGUSR2).join(SLEEP)  # handled while not polling
        run_until(loop, lambda: len(got) == 2)
        assert got == ["graceful", "force"] and stops.forced
    finally:
        stops.close()
    assert signal.getsignal(signal.SIGUSR1) is signal.SIG_DFL


def test_second_sigint_forces_and_second_sigterm_does_not(loop: EventLoop) -> None:
    got: list[str] = []
    stops = StopSignals(
        loop, graceful=lambda: got.append("graceful"), force=lambda: got.append("force")
    )
    try:
        stops._on_stop_signal(signal.SIGTERM)
        stops._on_stop_signal(signal.SIGTERM)
        assert got == ["graceful"]
        stops._on_stop_signal(signal.SIGINT)
        stops._on_stop_signal(signal.SIGINT)
        assert got == ["graceful", "force"]
    finally:
        stops.close()
