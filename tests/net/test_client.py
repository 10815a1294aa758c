"""TcpClient over every poller: connect, retry until the server exists, reconnect after
the server closes (a real server restarted on the same port), stop and close.

Server and client share one loop driven from the test thread, so every step is
deterministic apart from the kernel's own timing.
"""

from __future__ import annotations

import errno
import socket
import threading
import time
from pathlib import Path

import pytest
from net_support import LIVENESS, fd_count

from ioreactor.echo import EchoHandler
from ioreactor.loop.event_loop import EventLoop
from ioreactor.net.buffer import Buffer
from ioreactor.net.client import TcpClient
from ioreactor.net.connection import TcpConnection
from ioreactor.net.handlers import Handler
from ioreactor.net.server import TcpServer
from ioreactor.testing import free_port, run_until

pytestmark = pytest.mark.timeout(60)

FAST_RETRY = {"backoff_initial": 0.02, "backoff_max": 0.05}


class Greeter(Handler):
    """Says hello on every new connection and keeps what comes back."""

    def __init__(self) -> None:
        self.received = bytearray()
        self.connects = 0
        self.closes = 0

    def on_connection(self, conn: TcpConnection) -> None:
        self.connects += 1
        conn.send(b"hello %d" % self.connects)

    def on_message(self, conn: TcpConnection, buffer: Buffer) -> None:
        self.received += buffer.read_all()

    def on_close(self, conn: TcpConnection) -> None:
        self.closes += 1


def test_connects_and_talks(loop: EventLoop) -> None:
    server = TcpServer(loop, ("127.0.0.1", 0), EchoHandler()).start()
    greeter = Greeter()
    client = TcpClient(loop, ("127.0.0.1", server.port), greeter).connect()
    run_until(loop, lambda: greeter.received == b"hello 1")
    conn = client.connection
    assert conn is not None and conn.connected
    assert client.connections_made == 1
    assert conn.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY), "NODELAY by default"
    client.close()
    run_until(loop, lambda: greeter.closes == 1)
    assert client.connection is None
    server.close()


def test_retries_until_the_server_appears(loop: EventLoop) -> None:
    port = free_port()
    greeter = Greeter()
    client = TcpClient(loop, ("127.0.0.1", port), greeter, **FAST_RETRY).connect()
    run_until(loop, lambda: client.connector.attempts >= 3)  # refused a few times
    assert greeter.connects == 0
    server = TcpServer(loop, ("127.0.0.1", port), EchoHandler()).start()
    run_until(loop, lambda: greeter.received == b"hello 1")
    client.close()
    run_until(loop, lambda: greeter.closes == 1)
    server.close()


def test_no_retry_reports_the_failure_once(loop: EventLoop) -> None:
    failures: list[OSError] = []
    before = fd_count()
    TcpClient(
        loop, ("127.0.0.1", free_port()), Greeter(), retry=False, on_connect_failed=failures.append
    ).connect()
    run_until(loop, lambda: bool(failures))
    for _ in range(5):
        loop.run_once(0.01)
    assert [e.errno for e in failures] == [errno.ECONNREFUSED]
    assert fd_count() == before


def test_reconnects_after_the_server_closes_and_restarts(loop: EventLoop) -> None:
    first = TcpServer(loop, ("127.0.0.1", 0), EchoHandler()).start()
    port = first.port
    greeter = Greeter()
    client = TcpClient(loop, ("127.0.0.1", port), greeter, reconnect=True, **FAST_RETRY).connect()
    run_until(loop, lambda: greeter.received == b"hello 1")
    first.close()  # the server goes away: connection closed, port refused
    run_until(loop, lambda: greeter.closes == 1)
    run_until(loop, lambda: client.connector.attempts >= 2)  # refused while it is down
    assert client.connection is None
    second = TcpServer(loop, ("127.0.0.1", port), EchoHandler()).start()  # same port
    run_until(loop, lambda: greeter.received == b"hello 1hello 2")
    assert client.connections_made == 2
    client.close()
    run_until(loop, lambda: greeter.closes == 2)
    for _ in range(10):  # close() means: no reconnect
        loop.run_once(0.01)
    assert client.connections_made == 2
    second.close()


def test_stop_keeps_the_connection_but_ends_reconnecting(loop: EventLoop) -> None:
    server = TcpServer(loop, ("127.0.0.1", 0), EchoHandler()).start()
    greeter = Greeter()
    client = TcpClient(
        loop, ("127.0.0.1", server.port), greeter, reconnect=True, **FAST_RETRY
    ).connect()
    run_until(loop, lambda: greeter.connects == 1)
    client.stop()
    assert client.connection is not None and client.connection.connected
    server.close()
    run_until(loop, lambda: greeter.closes == 1)
    for _ in range(10):
        loop.run_once(0.02)
    assert client.connections_made == 1, "a stopped client does not reconnect"


class Events(Handler):
    def __init__(self) -> None:
        self.events: list[str] = []

    def on_connection(self, conn: TcpConnection) -> None:
        self.events.append("on_connection")

    def on_close(self, conn: TcpConnection) -> None:
        self.events.append("on_close")


def test_close_from_another_thread_while_the_connect_completes_leaves_nothing_open(
    loop: EventLoop,
) -> None:
    """close() from another thread while the handshake completes: the loop sees the
    connect's writable event before the queued close, and must abandon that socket
    instead of starting a connection nobody will close."""
    listener = socket.create_server(("127.0.0.1", 0))
    handler = Events()
    client = TcpClient(loop, listener.getsockname(), handler)

    def connect_then_close_from_a_thread() -> None:
        client.connect()  # on the loop thread: the connect is in flight (EINPROGRESS)
        closer = threading.Thread(target=client.close)
        closer.start()
        closer.join()
        time.sleep(0.05)  # the handshake completes while the loop is busy here

    loop.call_soon(connect_then_close_from_a_thread)
    deadline = time.monotonic() + 0.3  # many iterations: time for a wrong start to show
    while time.monotonic() < deadline:
        loop.run_once(0.05)
    assert handler.events == []
    assert client.connection is None
    peer, _ = listener.accept()
    peer.settimeout(LIVENESS)
    assert peer.recv(10) == b"", "the client's socket is closed"
    peer.close()
    listener.close()


def test_unix_client_waits_for_the_socket_file_and_reconnects_after_a_restart(
    loop: EventLoop, tmp_path: Path
) -> None:
    """A stopped Unix server removes its socket file: connect() then fails with ENOENT,
    which for AF_UNIX means "not listening yet" and is retried like ECONNREFUSED."""
    path = tmp_path / "s.sock"
    handler = Events()
    client = TcpClient(
        loop, f"unix://{path}", handler, reconnect=True, backoff_initial=0.05, backoff_max=0.1
    ).connect()
    run_until(loop, lambda: client.connector.attempts >= 2)  # ENOENT, retried
    server = TcpServer(loop, f"unix://{path}", EchoHandler()).start()
    run_until(loop, lambda: handler.events == ["on_connection"])
    server.close()  # removes the socket file
    run_until(loop, lambda: handler.events == ["on_connection", "on_close"])
    assert not path.exists()
    server = TcpServer(loop, f"unix://{path}", EchoHandler()).start()
    run_until(loop, lambda: client.connections_made == 2)
    client.close()
    server.close()
    run_until(loop, lambda: handler.events[-1] == "on_close")
