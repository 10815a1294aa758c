"""TcpServer: single reactor, main-sub reactor threads, balancing, adopt, graceful shutdown.

The accepting loop runs in a :class:`LoopThread`; the sub-loops in their own threads; the
test drives blocking client sockets and reaches loop-owned state through ``lt.call``.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator

import pytest

from ioreactor.net.buffer import Buffer
from ioreactor.net.connection import TcpConnection
from ioreactor.net.handlers import Handler
from ioreactor.net.server import TcpServer
from ioreactor.testing import LoopThread, read_until_closed, recv_exactly

TIMEOUT = 30.0
BURST = 8 * 1024 * 1024


def connect(server: TcpServer) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


class ThreadCheckingEcho(Handler):
    """Echoes, and records any callback that runs off the connection's own loop thread."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.wrong_thread: list[str] = []
        self.closed_on: list[str] = []

    def _check(self, conn: TcpConnection, where: str) -> None:
        if not conn.loop.is_in_loop_thread() or conn.context != threading.get_ident():
            with self.lock:
                self.wrong_thread.append(where)

    def on_connection(self, conn: TcpConnection) -> None:
        conn.context = threading.get_ident()
        self._check(conn, "on_connection")

    def on_message(self, conn: TcpConnection, buffer: Buffer) -> None:
        self._check(conn, "on_message")
        conn.send(buffer.read_all())

    def on_close(self, conn: TcpConnection) -> None:
        self._check(conn, "on_close")
        with self.lock:
            self.closed_on.append(conn.loop.name)


class Burst(Handler):
    """On any input, answers with BURST bytes; on shutdown says goodbye first."""

    def __init__(self, goodbye: bytes = b"", fail_on_shutdown: bool = False) -> None:
        self.goodbye = goodbye
        self.fail_on_shutdown = fail_on_shutdown
        self.shutdown_on_own_thread: list[bool] = []

    def on_message(self, conn: TcpConnection, buffer: Buffer) -> None:
        buffer.retrieve_all()
        conn.send(b"x" * BURST)

    def on_shutdown(self, conn: TcpConnection) -> None:
        self.shutdown_on_own_thread.append(conn.loop.is_in_loop_thread())
        if self.fail_on_shutdown:
            raise RuntimeError("on_shutdown failed on purpose")
        conn.send(self.goodbye)
        conn.close()


@pytest.fixture
def lt() -> Iterator[LoopThread]:
    with LoopThread(name="main") as thread:
        yield thread


def start_server(lt: LoopThread, handler: Handler, **options: object) -> TcpServer:
    return lt.call(lambda: TcpServer(lt.loop, "127.0.0.1:0", handler, **options).start())  # type: ignore[arg-type]


def owners_by_loop(server: TcpServer) -> dict[str, int]:
    counts: dict[str, int] = {}
    for conn in server.connections:
        counts[conn.loop.name] = counts.get(conn.loop.name, 0) + 1
    return counts


def test_single_loop_serves_on_the_accepting_loop(lt: LoopThread) -> None:
    handler = ThreadCheckingEcho()
    server = start_server(lt, handler)
    try:
        clients = [connect(server) for _ in range(5)]
        for i, sock in enumerate(clients):
            sock.sendall(b"ping %d" % i)
            assert recv_exactly(sock, 5 + len(str(i))) == b"ping %d" % i
        assert server.io_loops == [lt.loop]
        assert lt.wait_until(lambda: server.connection_count == 5)
        assert all(conn.loop is lt.loop for conn in server.connections)
        for sock in clients:
            sock.close()
        assert lt.wait_until(lambda: server.connection_count == 0)
        assert handler.wrong_thread == []
    finally:
        lt.call(server.close)


def test_sub_loops_spread_connections_and_keep_each_on_its_own_thread(
    loop_thread: LoopThread,
) -> None:
    """30 connections over 3 sub-loops: 10 each, bytes intact, every callback on the owner."""
    handler = ThreadCheckingEcho()
    server = start_server(loop_thread, handler, loops=3)
    try:
        sub_loops = server.io_loops
        assert len(sub_loops) == 3 and loop_thread.loop not in sub_loops
        clients = [connect(server) for _ in range(30)]
        for sock in clients:
            for _ in range(3):
                chunk = os.urandom(16 * 1024)
                sock.sendall(chunk)
                assert recv_exactly(sock, len(chunk)) == chunk
        assert loop_thread.wait_until(lambda: server.connection_count == 30)
        assert sorted(owners_by_loop(server).values()) == [10, 10, 10]
        assert {conn.loop for conn in server.connections} == set(sub_loops)
        for sock in clients:
            sock.close()
        assert loop_thread.wait_until(lambda: server.connection_count == 0)
        assert sorted(handler.closed_on) == sorted([loop.name for loop in sub_loops] * 10)
        assert handler.wrong_thread == []
    finally:
        loop_thread.call(server.close)


def test_hash_balance_keeps_one_client_host_on_one_loop(lt: LoopThread) -> None:
    server = start_server(lt, ThreadCheckingEcho(), loops=3, balance="hash")
    try:
        clients = [connect(server) for _ in range(9)]
        assert lt.wait_until(lambda: server.connection_count == 9)
        assert list(owners_by_loop(server).values()) == [9]
        for sock in clients:
            sock.close()
    finally:
        lt.call(server.close)


def test_least_connections_fills_the_emptier_loop(lt: LoopThread) -> None:
    server = start_server(lt, ThreadCheckingEcho(), loops=2, balance="least-connections")
    try:
        first = [connect(server) for _ in range(4)]
        assert lt.wait_until(lambda: server.connection_count == 4)
        assert sorted(owners_by_loop(server).values()) == [2, 2]
        # Close both connections of one loop; the next two connections must go there.
        emptied = next(iter(server.connections)).loop
        ports = {c.peer[1] for c in server.connections if c.loop is emptied}
        for sock in first:
            if sock.getsockname()[1] in ports:
                sock.close()
        assert lt.wait_until(lambda: server.connection_count == 2)
        more = [connect(server) for _ in range(2)]
        assert lt.wait_until(lambda: server.connection_count == 4)
        assert owners_by_loop(server) == {loop.name: 2 for loop in server.io_loops}
        for sock in first + more:
            sock.close()
    finally:
        lt.call(server.close)


def test_adopt_serves_a_socket_accepted_elsewhere(lt: LoopThread) -> None:
    server = lt.call(
        lambda: TcpServer(lt.loop, "127.0.0.1:0", ThreadCheckingEcho(), loops=2).start(listen=False)
    )
    ours, theirs = socket.socketpair()
    try:
        theirs.setblocking(False)
        lt.call(server.adopt, theirs)
        ours.settimeout(TIMEOUT)
        ours.sendall(b"handed over")
        assert recv_exactly(ours, 11) == b"handed over"
        (conn,) = server.connections
        assert conn.loop in server.io_loops
        with pytest.raises(RuntimeError):
            _ = server.sockname  # not listening
    finally:
        lt.call(server.close)
        ours.close()


def test_close_force_closes_connections_and_stops_the_sub_loop_threads(lt: LoopThread) -> None:
    server = start_server(lt, ThreadCheckingEcho(), loops=2)
    clients = [connect(server) for _ in range(4)]
    assert lt.wait_until(lambda: server.connection_count == 4)
    threads = [t for t in threading.enumerate() if t.name.startswith("server-io-")]
    assert len(threads) == 2
    lt.call(server.close)
    for sock in clients:
        assert read_until_closed(sock, TIMEOUT) == (b"", True)
        sock.close()
    for t in threads:
        t.join(TIMEOUT)
        assert not t.is_alive()
    assert server.connection_count == 0


@pytest.mark.parametrize("loops", [0, 2])
def test_graceful_shutdown_drains_in_flight_output_then_reports_done(
    lt: LoopThread, loops: int
) -> None:
    """8 MiB queued for a client that is not reading yet: shutdown waits for all of it."""
    handler = Burst(goodbye=b"bye")
    server = start_server(lt, handler, loops=loops)
    done = threading.Event()
    sock = connect(server)
    try:
        sock.sendall(b"go")
        assert lt.wait_until(lambda: server.connection_count == 1)
        port = server.port
        server.shutdown(TIMEOUT, on_done=done.set)
        assert lt.wait_until(lambda: server.shutting_down)
        with pytest.raises(OSError):  # stopped accepting at once
            socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT).close()
        assert server.connection_count == 1 and not done.is_set()
        data, closed = read_until_closed(sock, TIMEOUT)
        assert data == b"x" * BURST + b"bye", "everything in flight, then the goodbye"
        assert closed
        assert done.wait(TIMEOUT)
        assert server.connection_count == 0
        assert handler.shutdown_on_own_thread == [True]
    finally:
        sock.close()
        lt.call(server.close)


def test_shutdown_force_closes_what_is_left_at_the_timeout(lt: LoopThread) -> None:
    server = start_server(lt, Burst(), loops=2)
    done = threading.Event()
    sock = connect(server)
    try:
        sock.sendall(b"go")
        assert lt.wait_until(lambda: server.connection_count == 1)
        server.shutdown(0.2, on_done=done.set)  # the client reads nothing meanwhile
        assert done.wait(TIMEOUT)
        assert server.connection_count == 0
        data, closed = read_until_closed(sock, TIMEOUT)
        assert closed and len(data) < BURST
    finally:
        sock.close()
        lt.call(server.close)


def test_a_failing_on_shutdown_closes_only_that_connection(lt: LoopThread) -> None:
    server = start_server(lt, Burst(fail_on_shutdown=True), loops=2)
    done = threading.Event()
    clients = [connect(server) for _ in range(3)]
    try:
        assert lt.wait_until(lambda: server.connection_count == 3)
        server.shutdown(TIMEOUT, on_done=done.set)
        assert done.wait(TIMEOUT)
        for sock in clients:
            assert read_until_closed(sock, TIMEOUT) == (b"", True)
    finally:
        for sock in clients:
            sock.close()
        lt.call(server.close)


def test_shutdown_with_no_connections_is_done_at_once_and_on_done_after_it_runs_too(
    lt: LoopThread,
) -> None:
    server = start_server(lt, ThreadCheckingEcho(), loops=2)
    first, second = threading.Event(), threading.Event()
    server.shutdown(TIMEOUT, on_done=first.set)
    assert first.wait(TIMEOUT)
    server.shutdown(TIMEOUT, on_done=second.set)
    assert second.wait(TIMEOUT)
    lt.call(server.close)


def test_invalid_arguments_are_named() -> None:
    with LoopThread() as lt:
        with pytest.raises(ValueError, match="loops"):
            TcpServer(lt.loop, "127.0.0.1:0", Handler(), loops=-1)
        with pytest.raises(ValueError, match="balance"):
            TcpServer(lt.loop, "127.0.0.1:0", Handler(), balance="random")  # type: ignore[arg-type]


def test_a_failed_start_starts_nothing_and_may_be_retried(lt: LoopThread) -> None:
    """Binding a busy address fails before any sub-loop thread starts; once the address
    is free, start() on the same server listens."""
    busy = socket.create_server(("127.0.0.1", 0))
    port = busy.getsockname()[1]
    server = TcpServer(lt.loop, f"127.0.0.1:{port}", Handler(), loops=2, reuse_port=False)
    threads = threading.active_count()
    with pytest.raises(OSError):
        lt.call(server.start)
    assert threading.active_count() == threads, "no sub-loop thread left running"
    busy.close()
    lt.call(server.start)
    with socket.create_connection(("127.0.0.1", port), timeout=10):
        assert lt.wait_until(lambda: len(server.connections) == 1, 10)
    lt.call(server.close)
