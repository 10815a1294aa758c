"""UringConnection on a completion-mode loop: integrity, lifecycle, buffer lifetimes and
the completion errors (ENOBUFS, ECANCELED, resets), on real loopback sockets.

The server runs on a :class:`UringLoopThread`; the test thread plays the peers with plain
sockets. Loop-owned state is read only through ``lt.call``. Deadlines are for liveness.
"""

from __future__ import annotations

import errno
import gc
import logging
import random
import socket
import struct
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from ioreactor.loop.uring import completion as completion_mod
from ioreactor.loop.uring.completion import HANDLERS, RECV, SEND, channel_key
from ioreactor.net.buffer import Buffer
from ioreactor.net.connection import IOV_MAX, TcpConnection
from ioreactor.net.handlers import Handler
from ioreactor.net.server import TcpServer
from ioreactor.net.uring.connection import JOIN_LIMIT, UringConnection
from ioreactor.testing import open_fds
from support.echo import echo_many
from support.uring import UringLoopThread, make_loop, port_of

pytestmark = pytest.mark.timeout(60)

LIVENESS = 20.0
MiB = 1024 * 1024
LINGER_RESET = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends RST


class Echo(Handler):
    """Echoes; counts every callback per connection (on the loop thread)."""

    def __init__(self, on_connect: Callable[[TcpConnection], None] | None = None) -> None:
        self.conns: list[TcpConnection] = []
        self.closes: Counter[TcpConnection] = Counter()
        self.after_close: list[str] = []
        self.high_water = 0
        self.on_connect = on_connect

    def on_connection(self, conn: TcpConnection) -> None:
        self.conns.append(conn)
        if self.on_connect is not None:
            self.on_connect(conn)

    def on_message(self, conn: TcpConnection, buffer: Buffer) -> None:
        if self.closes[conn]:
            self.after_close.append("on_message")
        conn.send(buffer.read_all())

    def on_high_water_mark(self, conn: TcpConnection, size: int) -> None:
        self.high_water += 1

    def on_close(self, conn: TcpConnection) -> None:
        self.closes[conn] += 1


def serve(lt: UringLoopThread, handler: Handler, **options: Any) -> tuple[str, int]:
    server = lt.call(lambda: TcpServer(lt.loop, ("127.0.0.1", 0), handler, **options).start())
    port: int = lt.call(lambda: server.port)
    return ("127.0.0.1", port)


def wait(lt: UringLoopThread, predicate: Callable[[], bool], what: str) -> None:
    assert lt.wait_until(predicate, LIVENESS), f"timed out waiting for {what}"


def quiet(lt: UringLoopThread, live: int = 0) -> Callable[[], bool]:
    """True once the ring holds only the acceptor's and ``live`` connections' receives,
    and no provided buffer is held: nothing in flight was forgotten."""
    port = lt.port

    def check() -> bool:
        return len(port.ops) == 1 + live and port.buffers.held == 0

    return check


def sizes(rng: random.Random, n: int, top: int) -> list[int]:
    """``n`` log-uniform sizes in 1..top."""
    return [max(1, int(2 ** rng.uniform(0, top.bit_length() - 1))) for _ in range(n)]


# -- integrity and lifecycle ---------------------------------------------------------------------


def test_echo_integrity_random_sizes_50_connections() -> None:
    rng = random.Random(8)
    payloads = [b"".join(rng.randbytes(n) for n in sizes(rng, 3, MiB)) for _ in range(50)]
    handler = Echo()
    with UringLoopThread() as lt:
        addr = serve(lt, handler)
        echoed = echo_many(addr, payloads, timeout=45)
        assert echoed == payloads
        wait(lt, lambda: len(handler.closes) == 50, "50 closes")
        assert all(conn_type is UringConnection for conn_type in map(type, handler.conns))
        assert set(handler.closes.values()) == {1}
        assert not handler.after_close
        wait(lt, quiet(lt), "in-flight operations to finish")


def test_half_close_both_ways() -> None:
    """Peer FIN -> on_eof (kept open) -> reply -> shutdown() through the ring -> close."""

    class Reverse(Handler):
        def __init__(self) -> None:
            self.closes = 0
            self.got = bytearray()

        def on_message(self, conn: TcpConnection, buffer: Buffer) -> None:
            self.got += buffer.read_all()

        def on_eof(self, conn: TcpConnection) -> bool:
            conn.send(bytes(reversed(self.got)))
            conn.shutdown()
            return True

        def on_close(self, conn: TcpConnection) -> None:
            self.closes += 1

    handler = Reverse()
    data = random.Random(2).randbytes(300_000)
    with UringLoopThread() as lt:
        sock = socket.create_connection(serve(lt, handler), timeout=LIVENESS)
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        got = bytearray()
        while chunk := sock.recv(MiB):
            got += chunk
        assert bytes(got) == data[::-1]  # everything, then the server's FIN
        wait(lt, lambda: handler.closes == 1, "on_close")
        sock.close()
        wait(lt, quiet(lt), "in-flight operations to finish")
        assert handler.closes == 1


def test_peer_reset_mid_write_closes_only_that_connection(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """16 MiB queued in 64 KiB chunks (SENDMSG gathers); the peer resets after 100 KB."""

    def flood(conn: TcpConnection) -> None:
        for _ in range(256):
            conn.send(b"z" * 65536)

    handler = Echo(on_connect=flood)
    caplog.set_level(logging.WARNING)
    with UringLoopThread() as lt:
        addr = serve(lt, handler, high_water_mark=64 * MiB)
        victim = socket.create_connection(addr, timeout=LIVENESS)
        got = 0
        while got < 100_000:
            got += len(victim.recv(65536))
        victim.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RESET)
        victim.close()
        wait(lt, lambda: sum(handler.closes.values()) == 1, "on_close of the reset one")
        conn = handler.conns[0]
        error = lt.call(lambda: conn.error)
        assert isinstance(error, OSError)
        assert error.errno in (errno.ECONNRESET, errno.EPIPE)
        # The loop goes on: a new connection is served (it is flooded too; read a bit).
        with socket.create_connection(addr, timeout=LIVENESS) as other:
            assert other.recv(10) == b"z" * 10
        wait(lt, lambda: sum(handler.closes.values()) == 2, "on_close of the second")
        wait(lt, quiet(lt), "in-flight operations to finish")
        assert set(handler.closes.values()) == {1}
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_force_close_with_a_send_in_flight_pins_its_bytes_until_the_completion() -> None:
    handler = Echo(on_connect=lambda conn: conn.send(b"q" * (32 * MiB)))
    with UringLoopThread() as lt:
        addr = serve(lt, handler, high_water_mark=64 * MiB)
        peer = socket.socket()
        peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * 1024)
        peer.settimeout(LIVENESS)
        peer.connect(addr)
        wait(lt, lambda: bool(handler.conns), "connection")
        conn = handler.conns[0]
        assert isinstance(conn, UringConnection)
        port = lt.port
        send_key = channel_key(conn) | SEND
        wait(lt, lambda: send_key in port.ops, "a send in flight (the peer does not read)")

        def close_and_look() -> tuple[bool, int]:
            in_flight = conn._out[0]
            conn.force_close()
            # Closed for the handler at once; the kernel may still read the payload, so
            # the loop's table keeps it (and the connection) until the completion.
            chunks, _ = port.pinned[send_key]
            return conn.closed, sum(chunk is in_flight for chunk in chunks)

        closed, pinned = lt.call(close_and_look)
        assert closed and pinned == 1
        wait(lt, lambda: send_key not in port.ops, "the cancelled send's completion")
        assert lt.call(lambda: send_key not in port.pinned)  # released only then
        assert handler.closes[conn] == 1
        try:  # what the kernel had taken still arrives, then the end of the stream
            while peer.recv(MiB):
                pass
        except ConnectionResetError:
            pass
        peer.close()
        wait(lt, quiet(lt), "in-flight operations to finish")


def test_fd_count_unchanged_after_500_connections() -> None:
    handler = Echo()
    with UringLoopThread() as lt:
        addr = serve(lt, handler)
        with socket.create_connection(addr, timeout=LIVENESS) as warm:  # lazy allocations
            warm.sendall(b"w")
            assert warm.recv(1) == b"w"
        wait(lt, lambda: sum(handler.closes.values()) == 1, "warm-up close")
        lt.call(lambda: None)  # one more iteration: its enter submitted the CLOSE
        gc.collect()  # sockets of earlier tests' servers, closed when collected
        before = open_fds()
        for batch in range(10):
            socks = [socket.create_connection(addr, timeout=LIVENESS) for _ in range(50)]
            for i, s in enumerate(socks):
                s.sendall(b"%d" % i)
            for i, s in enumerate(socks):
                assert s.recv(16) == b"%d" % i
                if (batch + i) % 3 == 0:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RESET)
                s.close()
        wait(lt, lambda: sum(handler.closes.values()) == 501, "500 closes")
        assert set(handler.closes.values()) == {1}
        wait(lt, lambda: open_fds() == before, f"fd count back to {before}")
        wait(lt, quiet(lt), "in-flight operations to finish")


def test_failing_handler_closes_its_connection_and_the_loop_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Picky(Echo):
        def on_message(self, conn: TcpConnection, buffer: Buffer) -> None:
            if buffer.peek(1) == b"!":
                raise ValueError("bad input")
            super().on_message(conn, buffer)

    handler = Picky()
    with UringLoopThread() as lt:
        addr = serve(lt, handler)
        with socket.create_connection(addr, timeout=LIVENESS) as bad:
            bad.sendall(b"!boom")
            assert bad.recv(10) == b""
        with socket.create_connection(addr, timeout=LIVENESS) as good:
            good.sendall(b"fine")
            assert good.recv(10) == b"fine"
        wait(lt, lambda: sum(handler.closes.values()) == 2, "both closed")
    assert any("bad input" in r.getMessage() or r.exc_info for r in caplog.records)


# -- writing ---------------------------------------------------------------------------------


def test_sends_of_one_iteration_leave_in_one_send_operation() -> None:
    loop = make_loop()
    a, b = socket.socketpair()
    b.settimeout(LIVENESS)
    ring = port_of(loop).ring
    submitted: list[int] = []
    real = ring.prep_send_at

    def counting(fd: int, addr: int, length: int, user_data: int, flags: int) -> None:
        submitted.append(length)
        real(fd, addr, length, user_data, flags)

    ring.prep_send_at = counting  # type: ignore[method-assign]
    conn = UringConnection(loop, a, "pair", Handler())
    conn.start()
    try:
        for i in range(50):
            loop.call_soon(conn.send, b"%d;" % i)
        loop.call_soon(conn.send, bytearray(b"array;"))
        loop.call_soon(conn.send, memoryview(b"view;"))
        loop.run_once(0)
        expected = b"".join(b"%d;" % i for i in range(50)) + b"array;view;"
        assert submitted == [len(expected)]  # joined: one SEND for the whole iteration
        got = bytearray()
        while len(got) < len(expected):
            loop.run_once(0)
            got += b.recv(MiB)
        assert bytes(got) == expected
    finally:
        conn.force_close()
        loop.run_once(0)
        b.close()
        loop.close()


def test_more_than_iov_max_chunks_over_the_join_limit_go_as_sendmsg_batches() -> None:
    count = 3 * IOV_MAX + 17
    chunk = 200
    assert count * chunk > JOIN_LIMIT

    class Burst(Handler):
        def on_message(self, conn: TcpConnection, buffer: Buffer) -> None:
            buffer.retrieve_all()
            for i in range(count):
                conn.send(b"%08d" % i + b"." * (chunk - 8))

    with UringLoopThread() as lt:
        with socket.create_connection(serve(lt, Burst()), timeout=LIVENESS) as sock:
            sock.sendall(b"go")
            got = bytearray()
            while len(got) < count * chunk:
                got += sock.recv(MiB)
        assert bytes(got) == b"".join(b"%08d" % i + b"." * (chunk - 8) for i in range(count))


def test_short_send_completions_are_resubmitted_in_order(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without MSG_WAITALL the kernel completes a send short whenever the socket buffer
    is full; every remainder must go out before newer output."""
    import ioreactor.net.uring.connection as conn_mod

    monkeypatch.setattr(conn_mod, "SEND_FLAGS", socket.MSG_NOSIGNAL)
    short: list[int] = []
    real = HANDLERS[SEND]
    assert real is not None

    def watched(conn: UringConnection, res: int, flags: int) -> None:
        in_flight = sum(map(len, conn._out[: conn._inflight])) - conn._send_offset
        if 0 < res < in_flight:
            short.append(res)
        real(conn, res, flags)

    monkeypatch.setattr(completion_mod, "HANDLERS", [*HANDLERS])
    completion_mod.HANDLERS[SEND] = watched

    rng = random.Random(5)
    greeting = rng.randbytes(3 * MiB)  # one chunk, far more than the socket buffer takes

    def greet(conn: TcpConnection) -> None:
        conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16 * 1024)
        conn.send(greeting)
        conn.send(b"!")  # newer output: must not overtake the greeting's remainder

    with UringLoopThread() as lt:
        addr = serve(lt, Echo(on_connect=greet), high_water_mark=8 * MiB)
        with socket.create_connection(addr, timeout=LIVENESS) as sock:
            got = bytearray()
            while len(got) < len(greeting) + 1:
                got += sock.recv(64 * 1024)
            assert bytes(got) == greeting + b"!"
            sock.sendall(b"ping")
            assert sock.recv(4) == b"ping"
    assert short  # the short completions did happen and were resubmitted


# -- reading: provided buffers, ENOBUFS, ECANCELED ---------------------------------------------


def test_buffer_lifetimes_under_random_sizes_and_resets(caplog: pytest.LogCaptureFixture) -> None:
    """8 buffers of 4 KiB shared by 40 connections, a third of them reset mid-stream:
    every surviving byte is echoed intact, no buffer is recycled while held (that raises
    and would be logged), and none stays held at the end."""
    rng = random.Random(11)
    handler = Echo()
    survivors = [b"".join(rng.randbytes(n) for n in sizes(rng, 4, 512 * 1024)) for _ in range(27)]
    doomed = [rng.randbytes(rng.randrange(1, 400_000)) for _ in range(13)]
    with UringLoopThread(buffers=8, buffer_size=4096) as lt:
        addr = serve(lt, handler)

        def reset_peers() -> None:
            for data in doomed:
                s = socket.create_connection(addr, timeout=LIVENESS)
                s.setblocking(False)
                try:
                    s.send(data)
                except BlockingIOError:
                    pass
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RESET)
                s.close()

        resetter = threading.Thread(target=reset_peers)
        resetter.start()
        echoed = echo_many(addr, survivors, timeout=45)
        resetter.join(LIVENESS)
        assert echoed == survivors
        # A peer reset while still in the backlog is dropped before the handler sees it.
        wait(lt, quiet(lt), "every connection closed, every buffer back in the ring")
        assert len(handler.conns) >= len(survivors)
        assert len(handler.closes) == len(handler.conns)
        assert set(handler.closes.values()) == {1} and not handler.after_close
        enobufs = lt.call(lambda: lt.port.enobufs)
    assert enobufs > 0  # 8 buffers cannot serve 40 busy connections: the dry ring happened
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_enobufs_when_the_ring_runs_dry_recovers_without_data_loss() -> None:
    rng = random.Random(3)
    payloads = [rng.randbytes(128 * 1024) for _ in range(16)]
    with UringLoopThread(buffers=4, buffer_size=2048) as lt:
        addr = serve(lt, Echo())
        assert echo_many(addr, payloads, timeout=45) == payloads
        assert lt.call(lambda: lt.port.enobufs) > 0
        wait(lt, quiet(lt), "every buffer back in the ring")


def test_close_cancels_the_armed_receive_with_ecanceled(monkeypatch: pytest.MonkeyPatch) -> None:
    handler = Echo()
    seen: list[int] = []
    real = HANDLERS[RECV]
    assert real is not None

    def watched(conn: UringConnection, res: int, flags: int) -> None:
        if conn.closed:
            seen.append(res)  # what the kernel says about a closed connection's receive
        real(conn, res, flags)

    monkeypatch.setattr(completion_mod, "HANDLERS", [*HANDLERS])
    completion_mod.HANDLERS[RECV] = watched
    with UringLoopThread() as lt, socket.create_connection(serve(lt, handler)) as sock:
        sock.settimeout(LIVENESS)
        sock.sendall(b"hi")
        assert sock.recv(2) == b"hi"
        conn = handler.conns[0]
        assert isinstance(conn, UringConnection)
        assert lt.call(lambda: channel_key(conn) | RECV in lt.port.ops)
        lt.call(conn.close)
        assert sock.recv(10) == b""  # the close went through the ring
        wait(lt, lambda: bool(seen), "the receive's last completion")
        assert seen == [-errno.ECANCELED]
        assert handler.closes[conn] == 1 and not handler.after_close
        wait(lt, quiet(lt), "in-flight operations to finish")


def test_paused_reading_cancels_and_resumes_without_losing_bytes() -> None:
    """Small water marks: the receive is cancelled (ECANCELED) and re-armed many times;
    bytes that arrived between the pause and the cancel are held, then delivered."""
    rng = random.Random(4)
    payloads = [rng.randbytes(3 * MiB) for _ in range(4)]
    handler = Echo()
    with UringLoopThread() as lt:
        addr = serve(lt, handler, high_water_mark=64 * 1024, low_water_mark=16 * 1024)
        assert echo_many(addr, payloads, timeout=45) == payloads
        assert lt.call(lambda: handler.high_water) > 0
        wait(lt, lambda: sum(handler.closes.values()) == 4, "4 closes")
        wait(lt, quiet(lt), "in-flight operations to finish")


def test_client_side_connections_use_the_completion_path() -> None:
    from ioreactor.net.client import TcpClient

    class Once(Handler):
        def __init__(self) -> None:
            self.got = bytearray()

        def on_connection(self, conn: TcpConnection) -> None:
            conn.send(b"ping")

        def on_message(self, conn: TcpConnection, buffer: Buffer) -> None:
            self.got += buffer.read_all()

    with socket.create_server(("127.0.0.1", 0)) as listener, UringLoopThread() as lt:
        handler = Once()
        client = lt.call(
            lambda: TcpClient(lt.loop, listener.getsockname(), handler, retry=False).connect()
        )
        peer, _ = listener.accept()
        with peer:
            assert peer.recv(4) == b"ping"
            peer.sendall(b"pong")
            wait(lt, lambda: handler.got == b"pong", "pong")
            assert isinstance(lt.call(lambda: client.connection), UringConnection)
        lt.call(client.close)


def test_a_completion_mode_connection_refuses_a_readiness_loop() -> None:
    from ioreactor.loop.event_loop import EventLoop

    loop = EventLoop("epoll")
    a, b = socket.socketpair()
    try:
        with pytest.raises(TypeError, match="completion-mode"):
            UringConnection(loop, a, "pair", Handler())
    finally:
        a.close()
        b.close()
        loop.close()
