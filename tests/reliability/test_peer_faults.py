"""Peers that misbehave at the TCP level: reset mid-write, killed, stopped, silent, never reading.

Each case checks that the bad peer costs only its own connection (closed once, fd
released, nothing logged above what the case deserves) and that the server goes on
serving everyone else. Misbehaving clients run as processes so they can be killed
(SIGKILL) or frozen (SIGSTOP: the kernel still ACKs, no FIN is ever sent).
"""

from __future__ import annotations

import contextlib
import errno
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from reliability_support import TIMEOUT, rst_close, serve

from ioreactor.http import protocol as protocol_module
from ioreactor.http.echo_app import build_echo_app
from ioreactor.http.limits import Limits
from ioreactor.http.protocol import BODY
from ioreactor.http.server import HttpServer
from ioreactor.net.buffer import Buffer
from ioreactor.net.connection import TcpConnection
from ioreactor.net.handlers import Handler
from ioreactor.net.server import TcpServer
from ioreactor.testing import LoopThread, open_fds, read_until_closed, wait_until
from support.http import ResponseReader, http_get

PEER_CLIENT = Path(__file__).with_name("peer_client.py")
#: Short deadlines so the faults play out in about a second.
FAST = Limits(
    header_timeout=1.0,
    keepalive_timeout=1.0,
    body_timeout=1.0,
    linger_timeout=0.5,
    sweep_interval=0.1,
)

# -- reset in the middle of a large write ---------------------------------------------------

BIG = 16 * 1024 * 1024


class BigReply(Handler):
    """``big`` -> BIG bytes; anything else is echoed. Records how connections end."""

    def __init__(self) -> None:
        self.closed: list[TcpConnection] = []

    def on_message(self, conn: TcpConnection, buffer: Buffer) -> None:
        data = buffer.read_all()
        conn.send(b"x" * BIG if data == b"big" else data)

    def on_close(self, conn: TcpConnection) -> None:
        self.closed.append(conn)


def test_peer_reset_in_the_middle_of_a_large_write(loop_thread: LoopThread) -> None:
    handler = BigReply()
    server = loop_thread.call(TcpServer(loop_thread.loop, ("127.0.0.1", 0), handler).start)
    fds_before = open_fds()
    client = socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT)
    client.sendall(b"big")
    assert len(client.recv(65536)) > 0
    (conn,) = loop_thread.call(lambda: list(server.connections))
    assert loop_thread.wait_until(lambda: conn.output_size > 0)  # the write is in progress
    rst_close(client)
    assert loop_thread.wait_until(lambda: len(handler.closed) == 1)
    assert handler.closed == [conn]  # on_close exactly once
    assert isinstance(conn.error, OSError)
    assert conn.error.errno in (errno.ECONNRESET, errno.EPIPE)
    assert loop_thread.call(lambda: conn.output_size) == 0  # the rest was dropped
    assert loop_thread.call(lambda: server.connection_count) == 0
    with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as other:
        other.sendall(b"still here")
        assert other.recv(100) == b"still here"
    assert loop_thread.wait_until(lambda: len(handler.closed) == 2)
    # On io_uring the close itself is an operation on the ring: it completes an
    # iteration after on_close, so wait for the count rather than sample it once.
    assert loop_thread.wait_until(lambda: open_fds() == fds_before, 10), open_fds()
    loop_thread.call(server.close)


# -- HTTP peers that die, freeze or say nothing ----------------------------------------------


@contextlib.contextmanager
def running_server(limits: Limits) -> Iterator[tuple[LoopThread, HttpServer]]:
    with LoopThread(name="faults") as lt:
        server = HttpServer(lt.loop, ("127.0.0.1", 0), build_echo_app(), limits=limits)
        lt.call(server.start)
        try:
            yield lt, server
        finally:
            lt.call(server.close)


@pytest.fixture
def http_server() -> Iterator[tuple[LoopThread, HttpServer]]:
    """Deadlines of about a second: the faults a timeout must end play out quickly."""
    with running_server(FAST) as running:
        yield running


@pytest.fixture
def patient_server() -> Iterator[tuple[LoopThread, HttpServer]]:
    """The default deadlines (30 s for a body): what ends a connection here sooner is
    the fault itself, not a timeout."""
    with running_server(Limits()) as running:
        yield running


def start_peer(mode: str, port: int) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, str(PEER_CLIENT), mode, str(port)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    return proc


def end_peer(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGCONT)
        proc.kill()
    proc.wait(TIMEOUT)


def phase_of(lt: LoopThread, server: HttpServer) -> list[int]:
    return lt.call(lambda: [c.context.phase for c in server.tcp.connections])


#: Far below the default body timeout (30 s), far above the milliseconds a close takes.
DEATH_NOTICE = 10.0


def test_peer_killed_mid_request(patient_server: tuple[LoopThread, HttpServer]) -> None:
    lt, server = patient_server
    peer = start_peer("partial-body", server.port)
    try:
        assert lt.wait_until(lambda: server.tcp.connection_count == 1)
        assert wait_until(lambda: phase_of(lt, server) == [BODY])  # the request is open
        peer.kill()  # its kernel closes the socket: FIN, and no more body
        peer.wait(TIMEOUT)
        assert lt.wait_until(lambda: server.tcp.connection_count == 0, timeout=DEATH_NOTICE)
        sweep = server.handler.sweep_of(lt.loop)
        assert lt.call(lambda: len(sweep.protocols)) == 0  # nothing left behind
        assert http_get(server.port) == 200
    finally:
        end_peer(peer)


@pytest.mark.parametrize(
    ("mode", "expected"),
    [("partial-head", "got HTTP/1.1 408 Request Timeout"), ("keepalive", "got EOF")],
    ids=["header-timeout", "keepalive-timeout"],
)
def test_peer_stopped_without_fin_is_closed_by_the_timeout(
    http_server: tuple[LoopThread, HttpServer], mode: str, expected: str
) -> None:
    """SIGSTOP: the peer's kernel still ACKs, but nothing more arrives and no FIN."""
    lt, server = http_server
    peer = start_peer(mode, server.port)
    try:
        assert lt.wait_until(lambda: server.tcp.connection_count == 1)
        peer.send_signal(signal.SIGSTOP)
        # while the peer stays frozen, the server's deadline alone ends the connection
        assert lt.wait_until(lambda: server.tcp.connection_count == 0, timeout=TIMEOUT)
        peer.send_signal(signal.SIGCONT)
        out, _ = peer.communicate(timeout=TIMEOUT)
        assert out.strip() == expected  # what the server said before it closed
    finally:
        end_peer(peer)


def test_clients_that_connect_and_never_send_are_closed(tmp_path: Path) -> None:
    """A subprocess server with a 1 s header timeout: 100 silent connections close,
    silently, while a normal client is served."""
    with serve(tmp_path, "--workers", "0", "--header-timeout", "1") as server:
        fds_before = server.fds()
        started = time.monotonic()
        silent = [
            socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT)
            for _ in range(100)
        ]
        try:
            assert http_get(server.port) == 200
            for sock in silent:
                data, closed = read_until_closed(sock)
                assert closed and data == b""  # nothing was asked: no 408, just a close
            assert time.monotonic() - started >= 0.9  # closed by the deadline, not at once
            assert wait_until(lambda: server.fds() == fds_before)
        finally:
            for sock in silent:
                sock.close()


def test_empty_lines_trickled_before_a_request_meet_the_header_timeout(
    http_server: tuple[LoopThread, HttpServer],
) -> None:
    _, server = http_server
    with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as sock:
        deadline = time.monotonic() + 4 * FAST.header_timeout
        closed = False
        while time.monotonic() < deadline and not closed:
            try:
                sock.sendall(b"\r\n")
            except OSError:
                closed = True
                break
            _, closed = read_until_closed(sock, timeout=0.3)
        assert closed, "the connection outlived four header timeouts"


# -- a client that never reads its responses ---------------------------------------------------

#: Body of each pipelined POST /echo; the response is as large.
ECHO_BODY = 256 * 1024
#: What each greedy client tries to push (it stops when the server stops taking it).
GREEDY_TOTAL = 64 * 1024 * 1024
GREEDY_CLIENTS = 16
#: Server RSS growth allowed while every greedy client is stuck: per connection, the
#: high water mark (1 MiB), one response past it and one read buffer, with ample slack.
#: Unbounded, the server would hold what the clients pushed (hundreds of MiB).
RSS_GROWTH_BOUND = 128 * 1024 * 1024


def greedy_client(port: int, sent: list[int], ready: threading.Barrier) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    request = b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % ECHO_BODY
    request += b"e" * ECHO_BODY
    sock.settimeout(3.0)  # sendall gives up when the server stops taking input
    total = 0
    try:
        while total < GREEDY_TOTAL:
            sock.sendall(request)
            total += len(request)
    except TimeoutError:
        pass
    sent.append(total)
    ready.wait(TIMEOUT)
    return sock


def test_clients_that_never_read_cannot_grow_server_memory(tmp_path: Path) -> None:
    with serve(tmp_path, "--workers", "0") as server:
        assert http_get(server.port) == 200
        rss_before = server.rss()
        sent: list[int] = []
        socks: list[socket.socket] = []
        ready = threading.Barrier(GREEDY_CLIENTS + 1)

        def run() -> None:
            socks.append(greedy_client(server.port, sent, ready))

        threads = [threading.Thread(target=run, daemon=True) for _ in range(GREEDY_CLIENTS)]
        for t in threads:
            t.start()
        try:
            ready.wait(TIMEOUT * 2)
            assert len(sent) == GREEDY_CLIENTS
            assert all(total < GREEDY_TOTAL for total in sent), "the server kept reading"
            growth = server.rss() - rss_before
            pushed = sum(sent)
            print(f"\npushed {pushed / 2**20:.0f} MiB unread; server RSS +{growth / 2**20:.1f} MiB")
            assert growth < RSS_GROWTH_BOUND
            assert http_get(server.port) == 200  # everyone else is still served
        finally:
            for sock in socks:
                rst_close(sock)
            for t in threads:
                t.join(TIMEOUT)


def send_quietly(sock: socket.socket, data: bytes) -> None:
    """sendall from a thread; the test may reset the connection under it."""
    try:
        sock.sendall(data)
    except OSError:
        pass


def test_a_slow_reader_of_pipelined_responses_gets_them_all(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The pause is back-pressure, not loss: once the client reads, every response of its
    pipelined burst arrives, in order, intact. The resume poll is stretched to 5 s so
    the window between "output drained" and "parsing resumed" is certain, not a race."""
    monkeypatch.setattr(protocol_module, "RESUME_POLL", 5.0)
    count = 64
    bodies = [b"%06d" % i * (ECHO_BODY // 6) for i in range(count)]
    burst = b"".join(
        b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n%s" % (len(b), b)
        for b in bodies
    )
    with LoopThread(name="slow-reader") as lt:
        server = HttpServer(lt.loop, ("127.0.0.1", 0), build_echo_app())
        lt.call(server.start)
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        sock.settimeout(TIMEOUT)
        sock.connect(("127.0.0.1", server.port))
        writer = threading.Thread(target=send_quietly, args=(sock, burst), daemon=True)
        writer.start()
        try:
            assert lt.wait_until(
                lambda: any(c.context.paused for c in server.tcp.connections), timeout=TIMEOUT
            )
            parsed = ResponseReader()
            while len(parsed) < count:
                chunk = sock.recv(1 << 20)
                assert chunk, f"closed after {len(parsed)} of {count} responses"
                parsed.feed(chunk)
            assert parsed.statuses == [200] * count
            assert parsed.bodies == bodies
        finally:
            rst_close(sock)
            writer.join(TIMEOUT)
            lt.call(server.close)
