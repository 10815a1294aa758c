"""ioreactor.testing: the helpers users (and this suite) test their protocols with."""

from __future__ import annotations

import gc
import socket
import threading
import time

import pytest

from ioreactor.loop.event_loop import EventLoop
from ioreactor.loop.timing_wheel import TimingWheel
from ioreactor.net.buffer import Buffer
from ioreactor.net.channels import connection_class
from ioreactor.net.connection import TcpConnection
from ioreactor.net.handlers import Handler
from ioreactor.testing import (
    LoopThread,
    MockClock,
    connection_pair,
    free_port,
    open_fds,
    read_until_closed,
    recv_exactly,
    run_until,
    wait_until,
)

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


# -- driving a loop from the test thread ---------------------------------------------------


def test_run_until_runs_the_loop_until_the_condition_holds(loop: EventLoop) -> None:
    fired: list[float] = []
    start = loop.time()  # read before the timer's own reading of the clock
    loop.call_later(0.05, lambda: fired.append(loop.time()))
    run_until(loop, lambda: bool(fired))
    assert fired and fired[0] - start >= 0.05


def test_run_until_fails_when_the_condition_never_holds(loop: EventLoop) -> None:
    start = time.monotonic()
    with pytest.raises(AssertionError, match=r"not reached within 0\.2 s"):
        run_until(loop, lambda: False, timeout=0.2)
    assert 0.2 <= time.monotonic() - start < 5


def test_wait_until_returns_true_once_the_condition_holds_false_at_the_deadline() -> None:
    flag = threading.Event()
    threading.Timer(0.05, flag.set).start()
    assert wait_until(flag.is_set, timeout=10)
    start = time.monotonic()
    assert not wait_until(lambda: False, timeout=0.1)
    assert time.monotonic() - start >= 0.1


class Upper(Handler):
    """Answers each read upper-cased; closes on ``bye``."""

    def __init__(self) -> None:
        self.answered = 0

    def on_message(self, conn: TcpConnection, buffer: Buffer) -> None:
        data = buffer.read_all()
        conn.send(data.upper())
        self.answered += len(data)
        if b"bye" in data:
            conn.close()


def test_connection_pair_puts_the_handler_on_a_connection_of_the_loops_kind(
    loop: EventLoop,
) -> None:
    handler = Upper()
    conn, peer = connection_pair(loop, handler)
    try:
        assert type(conn) is connection_class(loop)
        peer.sendall(b"hello")
        run_until(loop, lambda: handler.answered == 5 and conn.output_size == 0)
        assert recv_exactly(peer, 5) == b"HELLO"
        peer.sendall(b"bye")
        run_until(loop, lambda: conn.closed)
        loop.run_once(0)  # io_uring releases the fd at the next enter (docs/uring.md)
        assert read_until_closed(peer) == (b"BYE", True)
    finally:
        conn.force_close()
        peer.close()


def test_connection_pair_passes_options_to_the_connection(loop: EventLoop) -> None:
    with pytest.raises(ValueError, match="water"):
        connection_pair(loop, Upper(), high_water_mark=10, low_water_mark=20)
    conn, peer = connection_pair(loop, Upper(), high_water_mark=100, low_water_mark=10)
    conn.force_close()
    peer.close()


# -- the peer's side -------------------------------------------------------------------


def test_recv_exactly_reads_across_short_reads_and_fails_at_eof() -> None:
    a, b = socket.socketpair()
    with a, b:
        b.settimeout(10)
        a.sendall(b"abc")
        threading.Timer(0.05, a.sendall, (b"defg",)).start()
        assert recv_exactly(b, 6) == b"abcdef"
        a.shutdown(socket.SHUT_WR)
        with pytest.raises(ConnectionError, match="EOF after 1 of 2 bytes"):
            recv_exactly(b, 2)


def test_read_until_closed_says_whether_the_peer_closed_in_time() -> None:
    a, b = socket.socketpair()
    with a, b:
        a.sendall(b"partial")
        assert read_until_closed(b, timeout=0.1) == (b"partial", False)
        a.sendall(b" and the rest")
        a.shutdown(socket.SHUT_WR)
        assert read_until_closed(b) == (b" and the rest", True)


def test_read_until_closed_counts_a_reset_as_closed() -> None:
    server = socket.create_server(("127.0.0.1", 0))
    with server, socket.create_connection(server.getsockname(), timeout=10) as client:
        accepted, _ = server.accept()
        accepted.sendall(b"x")
        client.sendall(b"unread")  # closing with unread input sends RST
        time.sleep(0.05)
        accepted.close()
        data, closed = read_until_closed(client)
        assert closed and data in (b"", b"x")


# -- a clock and ports ---------------------------------------------------------------------


def test_mock_clock_reads_the_same_through_every_face_and_moves_only_forward() -> None:
    clock = MockClock(100.0)
    assert clock() == clock.time() == clock.now == 100.0
    assert clock.advance(2.5) == 102.5 == clock()
    with pytest.raises(ValueError, match="does not go back"):
        clock.advance(-1)


def test_mock_clock_drives_a_timing_wheel() -> None:
    clock = MockClock()
    wheel: TimingWheel = TimingWheel(None, tick=0.1, slots=8, clock=clock.time)
    fired: list[float] = []
    wheel.schedule(0.35, lambda _arg, now: fired.append(now), None)
    while clock.now < 1.0:
        wheel.advance(clock.advance(0.1))
    assert len(fired) == 1 and 0.35 <= fired[0] <= 0.45 + 1e-9


@pytest.mark.parametrize("kind", [socket.SOCK_STREAM, socket.SOCK_DGRAM])
def test_free_port_can_be_bound(kind: socket.SocketKind) -> None:
    port = free_port(kind=kind)
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", port))
