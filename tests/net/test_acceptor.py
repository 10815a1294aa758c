"""Acceptor: bounded accept batches on every poller, and EMFILE survived.

The EMFILE test lowers RLIMIT_NOFILE in a child process running a real echo server
(never in the pytest process), fills its fd table from outside, and checks the spare-fd
trick: existing connections keep working, extra ones are closed rather than left
hanging, the warning is rate-limited, and accepting resumes once fds are free.
"""

from __future__ import annotations

import errno
import os
import re
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest
from net_support import fd_count

from ioreactor.loop.event_loop import EventLoop
from ioreactor.net.acceptor import Acceptor, open_listener

pytestmark = pytest.mark.timeout(60)

LIVENESS = 20.0


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    sock = open_listener(socket.AF_INET, ("127.0.0.1", 0), backlog=512)
    yield sock
    sock.close()


def connect_many(addr: tuple[str, int], n: int) -> list[socket.socket]:
    return [socket.create_connection(addr, timeout=LIVENESS) for _ in range(n)]


def test_accept_batch_is_bounded_per_event(listener: socket.socket, loop: EventLoop) -> None:
    accepted: list[socket.socket] = []
    acceptor = Acceptor(loop, listener, lambda s, peer: accepted.append(s), batch=10)
    acceptor.start()
    clients = connect_many(listener.getsockname(), 25)
    try:
        loop.run_once(LIVENESS)
        if loop.edge_triggered:
            assert len(accepted) >= 10  # the rest continues through call_soon
        else:
            assert len(accepted) == 10, "one readiness event accepts at most one batch"
        deadline = time.monotonic() + LIVENESS
        while len(accepted) < 25:
            assert time.monotonic() < deadline, f"only {len(accepted)} of 25 accepted"
            loop.run_once(0.05)
        assert all(not s.getblocking() for s in accepted)
        peers = {s.getpeername() for s in accepted}
        assert peers == {c.getsockname() for c in clients}
    finally:
        for s in accepted + clients:
            s.close()
        acceptor.close()


def test_backlog_beyond_one_batch_is_accepted_after_a_busy_spell(
    listener: socket.socket, loop: EventLoop
) -> None:
    """Many connections queue while the loop is busy: every one is accepted (ET too)."""
    accepted: list[socket.socket] = []
    acceptor = Acceptor(loop, listener, lambda s, peer: accepted.append(s), batch=16)
    acceptor.start()
    clients = connect_many(listener.getsockname(), 150)  # the loop is not running
    try:
        deadline = time.monotonic() + LIVENESS
        while len(accepted) < 150:
            assert time.monotonic() < deadline, f"{len(accepted)} of 150 accepted: stalled"
            loop.run_once(0.05)
    finally:
        for s in accepted + clients:
            s.close()
        acceptor.close()


def test_close_stops_accepting_and_releases_fds(loop: EventLoop) -> None:
    before = fd_count()
    listener = open_listener(socket.AF_INET, ("127.0.0.1", 0))
    acceptor = Acceptor(loop, listener, lambda s, peer: s.close())
    acceptor.start()
    assert acceptor.listening
    queued = loop.watched_fds()
    acceptor.close()
    assert not acceptor.listening
    assert loop.watched_fds() == queued - 1
    acceptor.handle_read(select.EPOLLIN)  # a continuation arriving after close: ignored
    acceptor.close()  # idempotent
    assert fd_count() == before, "listener and spare fd are closed"


# -- EMFILE ---------------------------------------------------------------------------------

SERVER = r"""
import logging, os, resource, signal, sys
from ioreactor.echo import EchoHandler
from ioreactor.loop.backends import new_loop
from ioreactor.net.server import TcpServer

logging.basicConfig(level=logging.INFO, format="%(created).3f %(name)s %(message)s")
loop = new_loop(sys.argv[1])
server = TcpServer(loop, ("127.0.0.1", 0), EchoHandler()).start()
loop.add_signal_handler(signal.SIGTERM, loop.stop)
used = len(os.listdir("/proc/self/fd")) - 1  # minus listdir's own fd
free = int(sys.argv[2])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (used + free, hard))
print(server.port, flush=True)
loop.run()
server.close()
print("clean exit", file=sys.stderr)
"""

FREE_FDS = 6


def echo_once(sock: socket.socket, data: bytes) -> None:
    sock.sendall(data)
    got = b""
    while len(got) < len(data):
        chunk = sock.recv(100)
        assert chunk, "connection closed by the server"
        got += chunk
    assert got == data


def closed_by_server(sock: socket.socket) -> bool:
    """True when the server closed (or reset) the connection without a word."""
    try:
        return sock.recv(10) == b""
    except ConnectionResetError:
        return True


def test_emfile_is_survived_with_the_spare_fd(poller_name: str) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVER, poller_name, str(FREE_FDS)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    stderr: list[str] = []
    reader = threading.Thread(target=lambda: stderr.extend(proc.stderr or []), daemon=True)
    reader.start()
    clients: list[socket.socket] = []
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        addr = ("127.0.0.1", port)
        clients = connect_many(addr, FREE_FDS)  # takes every free fd of the server
        for i, c in enumerate(clients):
            echo_once(c, b"hello %d" % i)
        start = time.monotonic()
        for burst in range(2):
            extras = connect_many(addr, 5)
            for extra in extras:
                assert closed_by_server(extra), "an extra connection must not hang"
                extra.close()
            for c in clients:  # existing connections keep being served
                echo_once(c, b"still here")
            if burst == 0:
                time.sleep(1.2)
        elapsed = time.monotonic() - start
        for c in clients[:2]:  # free two fds in the server
            c.close()
        deadline = time.monotonic() + LIVENESS
        while True:
            assert time.monotonic() < deadline, "the server did not accept again"
            fresh = socket.create_connection(addr, timeout=LIVENESS)
            try:
                echo_once(fresh, b"accepted again")
                break
            except (AssertionError, ConnectionResetError):
                time.sleep(0.05)  # shed again: the server has not seen the close yet
            finally:
                fresh.close()
    finally:
        for c in clients:
            c.close()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(LIVENESS)
        finally:
            if proc.poll() is None:
                proc.kill()
            reader.join(LIVENESS)
    assert proc.returncode == 0, "".join(stderr)
    warnings = [line for line in stderr if "accept: Too many open files" in line]
    assert 2 <= len(warnings) <= int(elapsed) + 2, "".join(stderr)
    shed = [int(m.group(1)) for line in warnings if (m := re.search(r"\((\d+) so far\)", line))]
    assert shed and shed[0] >= 1 and shed == sorted(shed)
    assert "clean exit" in "".join(stderr)


class FailingOnce:
    """A listener whose first accept() fails with ``err``, as Linux's accept() does when
    the connection it was about to return had a network error pending (accept(2)).
    A stand-in: loopback cannot produce ENETDOWN or EHOSTUNREACH on demand."""

    def __init__(self, sock: socket.socket, err: int) -> None:
        self.sock = sock
        self.err: int | None = err

    def accept(self) -> tuple[socket.socket, object]:
        if self.err is not None:
            err, self.err = self.err, None
            raise OSError(err, os.strerror(err))
        return self.sock.accept()

    def fileno(self) -> int:
        return self.sock.fileno()

    def getsockname(self) -> object:
        return self.sock.getsockname()

    def close(self) -> None:
        self.sock.close()


@pytest.mark.parametrize("name", ["epoll", "epoll-et"])
@pytest.mark.parametrize("err", [errno.ENETDOWN, errno.EHOSTUNREACH, errno.ENETUNREACH])
def test_a_network_error_passed_on_by_accept_is_skipped_like_eagain(
    listener: socket.socket, name: str, err: int
) -> None:
    """accept(2): "treat them like EAGAIN by retrying". On an edge-triggered poller an
    accept loop that stopped at such an error would leave the rest of the backlog
    waiting for the next new connection."""
    loop = EventLoop(name)
    accepted: list[socket.socket] = []
    acceptor = Acceptor(loop, FailingOnce(listener, err), lambda s, peer: accepted.append(s))  # type: ignore[arg-type]
    acceptor.start()
    clients = connect_many(listener.getsockname(), 3)
    try:
        deadline = time.monotonic() + LIVENESS
        while len(accepted) < 3:
            assert time.monotonic() < deadline, f"{len(accepted)} of 3 accepted"
            loop.run_once(0.05)
    finally:
        for s in accepted + clients:
            s.close()
        acceptor.close()
        loop.close()
