"""Idle detection: Netty IdleStateHandler semantics on a hand-driven wheel, then on sockets.

The deterministic tests use a stand-in connection (the two timestamps and a loop are all
the monitor reads): a real connection stamps ``loop.now``, which a test cannot steer.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from typing import Any, cast

import pytest

from ioreactor.idle import IdleKind, IdleMonitor, IdleStateHandler
from ioreactor.loop.timing_wheel import TimingWheel
from ioreactor.net.connection import TcpConnection
from ioreactor.net.server import TcpServer
from ioreactor.testing import LoopThread

TICK = 0.05


@dataclass(eq=False)
class StandIn:
    last_read: float = 0.0
    last_write: float = 0.0
    loop: Any = None
    peer: str = "stand-in"


@dataclass
class Rig:
    """A monitor on a hand-driven wheel and the events it reported."""

    wheel: TimingWheel
    monitor: IdleMonitor
    events: list[tuple[float, IdleKind]] = field(default_factory=list)
    now: float = 0.0

    def run_to(self, end: float, activity: Any = None) -> None:
        """Advance the clock tick by tick to ``end``; ``activity(now)`` runs each tick."""
        while self.now < end - 1e-9:
            self.now = round(self.now + TICK, 6)
            if activity is not None:
                activity(self.now)
            self.wheel.advance(self.now)

    def times(self, kind: IdleKind) -> list[float]:
        return [t for t, k in self.events if k is kind]


def make_rig(**timeouts: float) -> tuple[Rig, StandIn]:
    wheel = TimingWheel(None, tick=TICK, slots=64, clock=lambda: 0.0)
    box: list[Rig] = []
    monitor = IdleMonitor(lambda _c, kind: box[0].events.append((box[0].now, kind)),
                          wheel=wheel, **timeouts)  # fmt: skip
    rig = Rig(wheel, monitor)
    box.append(rig)
    conn = StandIn()
    monitor.watch(cast(TcpConnection, conn))
    return rig, conn


def test_reader_idle_fires_once_per_period_of_continued_idleness() -> None:
    rig, _ = make_rig(reader_idle=1.0)
    rig.run_to(3.2)
    assert rig.times(IdleKind.READER) == [1.0, 2.0, 3.0]


def test_activity_restarts_the_idle_period() -> None:
    rig, conn = make_rig(reader_idle=1.0)
    rig.run_to(0.5)
    conn.last_read = 0.5
    rig.run_to(1.4)
    assert rig.events == []
    rig.run_to(1.5)
    assert rig.times(IdleKind.READER) == [1.5]
    rig.run_to(2.2)
    conn.last_read = 2.2  # a read after the event: next one a full period after it
    rig.run_to(3.3)
    assert rig.times(IdleKind.READER) == [1.5, 3.2]


def test_writer_idle_ignores_reads_and_reader_idle_ignores_writes() -> None:
    rig, conn = make_rig(reader_idle=1.0, writer_idle=1.0)

    def reads(now: float) -> None:
        conn.last_read = now

    rig.run_to(2.1, reads)
    assert rig.times(IdleKind.WRITER) == [1.0, 2.0]
    assert rig.times(IdleKind.READER) == []


def test_all_idle_needs_both_directions_quiet() -> None:
    rig, conn = make_rig(all_idle=1.0)

    def alternate(now: float) -> None:
        if round(now / TICK) % 2:
            conn.last_read = now
        else:
            conn.last_write = now

    rig.run_to(3.0, alternate)
    assert rig.events == []
    rig.run_to(4.05)
    assert rig.times(IdleKind.ALL) == [4.0]


def test_kinds_with_their_own_timeouts() -> None:
    rig, _ = make_rig(reader_idle=0.5, writer_idle=0.75, all_idle=1.0)
    rig.run_to(1.5)
    assert rig.times(IdleKind.READER) == [0.5, 1.0, 1.5]
    assert rig.times(IdleKind.WRITER) == [0.75, 1.5]
    assert rig.times(IdleKind.ALL) == [1.0]


def test_wheel_work_does_not_grow_with_the_read_rate() -> None:
    rig, conn = make_rig(reader_idle=1.0)
    visits = 0

    def busy(now: float) -> None:
        for i in range(10):  # ten reads per tick: only timestamps change
            conn.last_read = now - TICK + i * TICK / 10

    while rig.now < 10.0:
        rig.now = round(rig.now + TICK, 6)
        busy(rig.now)
        visits += rig.wheel.advance(rig.now)
    assert rig.events == []
    assert visits <= 11  # about one visit per timeout, not one per read (2000 reads)


def test_unwatch_from_the_callback_stops_everything() -> None:
    wheel = TimingWheel(None, tick=TICK, slots=64, clock=lambda: 0.0)
    events: list[IdleKind] = []
    conn = cast(TcpConnection, StandIn())

    def close(c: TcpConnection, kind: IdleKind) -> None:
        events.append(kind)
        monitor.unwatch(c)

    monitor = IdleMonitor(close, reader_idle=1.0, writer_idle=1.0, wheel=wheel)
    monitor.watch(conn)
    monitor.watch(conn)  # watching twice is one watch
    assert len(monitor) == 1
    wheel.advance(1.0)
    wheel.advance(5.0)
    assert events == [IdleKind.READER]  # the writer event of the same visit never came
    assert len(monitor) == 0 and len(wheel) == 0


@pytest.mark.parametrize(
    "timeouts",
    [{}, {"reader_idle": 0.0}, {"reader_idle": -1.0}, {"all_idle": 1, "writer_idle": -1}],
)
def test_invalid_timeouts(timeouts: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        IdleMonitor(lambda _c, _k: None, **timeouts)


class CloseWhenIdle(IdleStateHandler):
    def __init__(self) -> None:
        super().__init__(reader_idle=0.2)
        self.seen: list[tuple[IdleKind, float]] = []

    def on_idle(self, conn: TcpConnection, kind: IdleKind) -> None:
        self.seen.append((kind, conn.loop.time() - conn.last_read))
        conn.close()


def test_silent_client_is_closed_by_reader_idle_on_a_real_loop(loop_thread: LoopThread) -> None:
    handler = CloseWhenIdle()
    server = loop_thread.call(TcpServer(loop_thread.loop, ("127.0.0.1", 0), handler).start)
    with socket.create_connection(("127.0.0.1", server.port), timeout=20) as sock:
        assert sock.recv(1) == b""  # closed by the server once idle
    assert loop_thread.wait_until(lambda: len(handler.idle) == 0, timeout=10)
    kind, idle_for = handler.seen[0]
    assert kind is IdleKind.READER
    assert idle_for >= 0.2
