"""``EventLoop.call_each_second``: once per wall-clock second, before that second's events."""

from __future__ import annotations

import socket
import time

import pytest

from ioreactor.loop.event_loop import EventLoop
from ioreactor.loop.poller import READ, best_poller_name


# The second's bookkeeping runs in EventLoop.run_once after whichever poller returned:
# one backend shows it (the test waits for two wall-clock second boundaries).
@pytest.mark.parametrize("poller_name", [best_poller_name()])
def test_runs_once_a_second_before_the_events_of_the_new_second(loop: EventLoop) -> None:
    seconds: list[int] = []
    handle = loop.call_each_second(lambda: seconds.append(int(time.time())))
    reader, writer = socket.socketpair()
    seen_by_events: list[tuple[int, int]] = []

    def on_readable(events: int) -> None:
        reader.recv(16)
        seen_by_events.append((int(time.time()), seconds[-1]))

    loop.watch(reader.fileno(), READ, on_readable)
    try:
        loop.run_once(0)
        assert len(seconds) == 1, "it runs at the next iteration after registration"
        for _ in range(20):  # within the same second: not again
            if time.time() % 1.0 > 0.9:
                break
            loop.run_once(0)
        assert len(seconds) <= 2
        time.sleep(1.0 - time.time() % 1.0 + 0.01)  # just past the next boundary
        writer.send(b"x")
        loop.run_once(5)
        now, cached = seen_by_events[-1]
        assert cached == now, "the event saw the previous second"
        handle.cancel()
        time.sleep(1.0 - time.time() % 1.0 + 0.01)
        count = len(seconds)
        loop.run_once(0)
        assert len(seconds) == count, "cancelled"
    finally:
        loop.unwatch(reader.fileno())
        reader.close()
        writer.close()
