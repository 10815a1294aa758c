"""Heartbeat: the schedule on a hand-driven clock, the protocol, and dead peers on real sockets.

The end-to-end cases run the peer as a real process (``ioreactor heartbeat serve|connect``)
and make it silent without a FIN by stopping it with SIGSTOP: its kernel still ACKs,
only the application stops answering -- exactly what TCP itself cannot see.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from pathlib import Path
from typing import cast

import pytest

from ioreactor.codec.base import FrameError
from ioreactor.heartbeat import (
    HeartbeatHandler,
    MessageType,
    PeerSilentError,
)
from ioreactor.loop.timing_wheel import TimingWheel
from ioreactor.net.buffer import Buffer
from ioreactor.net.client import TcpClient
from ioreactor.net.connection import TcpConnection
from ioreactor.net.server import TcpServer
from ioreactor.testing import LoopThread, MockClock
from support.cli_process import CliProcess

# -- the schedule, on a deterministic clock -----------------------------------------------


class StandIn:
    """The parts of a connection the heartbeat uses, recording what it sends."""

    def __init__(self, handler: HeartbeatHandler, clock: MockClock) -> None:
        self.handler = handler
        self.loop = clock
        self.last_read = 0.0
        self.last_write = 0.0
        self.peer = ("198.51.100.7", 4242)
        self.input = Buffer()
        self.error: BaseException | None = None
        self.sent: list[tuple[float, int, bytes]] = []
        self.closed_at: float | None = None

    def send(self, data: bytes) -> None:
        frames: list[bytes] = []
        self.handler.codec.decode(Buffer(data), frames)
        self.sent.extend((self.loop.now, frame[0], frame[1:]) for frame in frames)

    def force_close(self) -> None:
        self.closed_at = self.loop.now
        self.handler.on_close(cast(TcpConnection, self))

    close = force_close

    def kinds(self, kind: MessageType) -> list[float]:
        return [t for t, k, _ in self.sent if k == kind]


TICK = 1 / 16


def rig(active: bool, misses: int = 3) -> tuple[HeartbeatHandler, StandIn, MockClock, TimingWheel]:
    clock = MockClock()
    wheel = TimingWheel(None, tick=TICK, slots=64, clock=clock.time)
    handler = HeartbeatHandler(1.0, misses, active=active, wheel=wheel)
    conn = StandIn(handler, clock)
    handler.on_connection(cast(TcpConnection, conn))
    return handler, conn, clock, wheel


def run_to(clock: MockClock, wheel: TimingWheel, end: float, conn: StandIn | None = None,
           reads_until: float = -1.0) -> None:  # fmt: skip
    """Tick the clock to ``end``; the peer is heard from every tick until ``reads_until``."""
    while clock.now < end - 1e-9:
        clock.now = round(clock.now + TICK, 9)
        if conn is not None and clock.now <= reads_until:
            conn.last_read = clock.now
        wheel.advance(clock.now)


def test_active_end_pings_each_interval_and_gives_the_verdict_half_an_interval_later(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="ioreactor.heartbeat")
    handler, conn, clock, wheel = rig(active=True)
    run_to(clock, wheel, 5.0)
    assert conn.kinds(MessageType.PING) == [1.0, 2.0, 3.0]
    assert conn.closed_at == 3.5  # between 3 and 4 intervals of silence
    assert isinstance(conn.error, PeerSilentError)
    assert "198.51.100.7" in str(conn.error) and "3 pings unanswered" in str(conn.error)
    assert "is dead" in caplog.text and "miss 3/3" in caplog.text
    assert handler.peers_declared_dead == 1 and len(handler) == 0 and len(wheel) == 0


def test_passive_end_pings_a_quarter_interval_later_same_verdict() -> None:
    _, conn, clock, wheel = rig(active=False)
    run_to(clock, wheel, 5.0)
    assert conn.kinds(MessageType.PING) == [1.25, 2.25, 3.25]
    assert conn.closed_at == 3.5


@pytest.mark.parametrize("misses", [1, 2, 5])
def test_verdict_window_for_other_miss_counts(misses: int) -> None:
    for active in (True, False):
        _, conn, clock, wheel = rig(active=active, misses=misses)
        run_to(clock, wheel, misses + 3.0)
        assert len(conn.kinds(MessageType.PING)) == misses
        assert conn.closed_at is not None and misses < conn.closed_at < misses + 1


def test_any_traffic_restarts_the_count() -> None:
    _, conn, clock, wheel = rig(active=True)
    run_to(clock, wheel, 2.5)
    assert conn.kinds(MessageType.PING) == [1.0, 2.0]
    conn.last_read = 2.5  # a PONG, or any data, arrived
    run_to(clock, wheel, 4.0)
    assert conn.closed_at is None
    run_to(clock, wheel, 10.0)
    assert conn.kinds(MessageType.PING) == [1.0, 2.0, 3.5, 4.5, 5.5]
    assert conn.closed_at == 6.0


def test_a_stall_of_our_own_does_not_condemn_the_peer_on_stale_silence() -> None:
    _, conn, clock, wheel = rig(active=True)
    run_to(clock, wheel, 0.5)
    clock.now = 10.0  # this process was stopped for 9.5 s: its timer never ran
    wheel.advance(10.0)
    assert conn.closed_at is None
    assert conn.kinds(MessageType.PING) == [10.0]  # the PINGs start from now
    run_to(clock, wheel, 20.0)
    assert conn.kinds(MessageType.PING) == [10.0, 11.0, 12.0]
    assert conn.closed_at == 12.25  # the last PING had a quarter interval
    _, conn, clock, wheel = rig(active=True)
    clock.now = 10.0
    wheel.advance(10.0)
    conn.last_read = 10.0  # the answer was already waiting in the socket
    run_to(clock, wheel, 12.0)
    assert conn.closed_at is None and conn.kinds(MessageType.PING) == [10.0, 11.0, 12.0]


def test_a_peer_that_keeps_talking_is_never_pinged() -> None:
    _, conn, clock, wheel = rig(active=True)
    run_to(clock, wheel, 20.0, conn, reads_until=20.0)
    assert conn.sent == [] and conn.closed_at is None


def test_ping_is_answered_with_its_payload_and_pong_gives_the_rtt() -> None:
    handler, conn, clock, _ = rig(active=True)
    ping = handler.encode(MessageType.PING, b"\x00" * 7 + b"\x05" + b"\x00" * 8)
    handler.on_message(cast(TcpConnection, conn), Buffer(ping))
    assert conn.sent == [(0.0, MessageType.PONG, b"\x00" * 7 + b"\x05" + b"\x00" * 8)]
    clock.now = 1.0
    conn.sent.clear()
    handler._check(handler._peers[cast(TcpConnection, conn)], 1.0)  # sends PING seq=1 at 1.0
    (_, _, probe) = conn.sent[0]
    clock.now = 1.25
    handler.on_message(cast(TcpConnection, conn), Buffer(handler.encode(MessageType.PONG, probe)))
    assert handler.pongs_received == 1
    assert handler.rtt(cast(TcpConnection, conn)) == pytest.approx(0.25)


def test_data_frames_reach_on_data_and_unknown_types_close() -> None:
    got: list[bytes] = []

    class App(HeartbeatHandler):
        def on_data(self, conn: TcpConnection, payload: bytes) -> None:
            got.append(payload)

    clock = MockClock()
    handler = App(1.0, 3, wheel=TimingWheel(None, tick=TICK, clock=clock.time))
    conn = StandIn(handler, clock)
    handler.on_connection(cast(TcpConnection, conn))
    stream = handler.encode(MessageType.DATA, b"hello") + handler.encode(MessageType.DATA)
    handler.on_message(cast(TcpConnection, conn), Buffer(stream))
    assert got == [b"hello", b""]
    handler.on_message(cast(TcpConnection, conn), Buffer(b"\x00\x00\x00\x01\x09"))
    assert conn.closed_at == 0.0
    assert isinstance(conn.error, FrameError) and "unknown type 9" in str(conn.error)


def test_encode_limits_and_parameters() -> None:
    handler = HeartbeatHandler(1.0, 3, max_frame_length=16)
    assert handler.encode(MessageType.DATA, b"x" * 11) == b"\x00\x00\x00\x0c\x00" + b"x" * 11
    with pytest.raises(ValueError, match="max_frame_length"):
        handler.encode(MessageType.DATA, b"x" * 12)
    with pytest.raises(ValueError):
        HeartbeatHandler(0.0, 3)
    with pytest.raises(ValueError):
        HeartbeatHandler(1.0, 0)


# -- real sockets, a real silent peer -------------------------------------------------------

INTERVAL = 0.2
MISSES = 3
#: Extra time allowed past (misses + 1) * interval on a loaded machine.
SLACK = 1.0


def heartbeat(tmp_path: Path, *args: str) -> CliProcess:
    """``ioreactor heartbeat ARGS`` as a child process, its log in a file of its own."""
    return CliProcess(tmp_path, "heartbeat", *args, name=f"{args[0]}-{time.monotonic_ns()}")


def serve(tmp_path: Path, port: int = 0) -> CliProcess:
    return heartbeat(
        tmp_path, "serve", "--listen", f"127.0.0.1:{port}",
        "--interval", str(INTERVAL), "--misses", str(MISSES),
    )  # fmt: skip


class Recording(HeartbeatHandler):
    """Records, per connection, the loop time of the close and of the last bytes received."""

    def __init__(self, active: bool) -> None:
        super().__init__(INTERVAL, MISSES, active=active)
        self.closes: list[tuple[float, float, BaseException | None]] = []

    def on_close(self, conn: TcpConnection) -> None:
        super().on_close(conn)
        self.closes.append((conn.loop.time(), conn.last_read, conn.error))


def assert_dead_within_window(handler: Recording) -> None:
    closed_at, last_read, error = handler.closes[0]
    assert isinstance(error, PeerSilentError), error
    silent = closed_at - last_read
    assert MISSES * INTERVAL <= silent <= (MISSES + 1) * INTERVAL + SLACK, silent


@pytest.mark.timeout(60)
def test_client_declares_a_stopped_server_dead(tmp_path: Path) -> None:
    handler = Recording(active=True)
    with serve(tmp_path) as server, LoopThread(name="hb-client") as lt:
        port = int(server.wait_for(r"heartbeat server on 127\.0\.0\.1:(\d+)").group(1))
        client = TcpClient(lt.loop, ("127.0.0.1", port), handler, reconnect=False)
        lt.call(client.connect)
        assert lt.wait_until(lambda: handler.pongs_received >= 2, timeout=20)
        os.kill(server.pid, signal.SIGSTOP)
        assert lt.wait_until(lambda: bool(handler.closes), timeout=20)
    assert_dead_within_window(handler)
    assert handler.pings_sent >= handler.pongs_received + MISSES


@pytest.mark.timeout(60)
def test_server_declares_a_stopped_client_dead(tmp_path: Path) -> None:
    handler = Recording(active=False)
    with LoopThread(name="hb-server") as lt:
        server = lt.call(TcpServer(lt.loop, ("127.0.0.1", 0), handler).start)
        with heartbeat(
            tmp_path, "connect", "--connect", f"127.0.0.1:{server.port}",
            "--interval", str(INTERVAL), "--misses", str(MISSES),
        ) as client:  # fmt: skip
            client.wait_for(r"pong seq=2 ")  # the client pings, we answer
            os.kill(client.pid, signal.SIGSTOP)
            assert lt.wait_until(lambda: bool(handler.closes), timeout=20)
    assert_dead_within_window(handler)
    assert handler.pings_sent >= MISSES  # the passive end pinged the silent client too


@pytest.mark.timeout(60)
def test_client_reconnects_when_the_server_comes_back(tmp_path: Path) -> None:
    handler = Recording(active=True)
    with LoopThread(name="hb-client") as lt:
        with serve(tmp_path) as server:
            port = int(server.wait_for(r"heartbeat server on 127\.0\.0\.1:(\d+)").group(1))
            client = TcpClient(
                lt.loop, ("127.0.0.1", port), handler,
                reconnect=True, backoff_initial=0.05, backoff_max=0.3,
            )  # fmt: skip
            lt.call(client.connect)
            assert lt.wait_until(lambda: handler.pongs_received >= 1, timeout=20)
            server.kill()  # the kernel closes its sockets: the client sees EOF or RST
            assert lt.wait_until(lambda: bool(handler.closes), timeout=20)
        with serve(tmp_path, port) as again:
            again.wait_for(r"connection from")
            before = lt.call(lambda: handler.pongs_received)
            assert lt.wait_until(lambda: handler.pongs_received > before, timeout=20)
            assert lt.call(lambda: client.connections_made) == 2
            lt.call(client.close)
