"""Connector: non-blocking connect, refusals with capped jittered back-off, timeouts,
self-connect detection. All on loopback (or a private network namespace)."""

from __future__ import annotations

import errno
import logging
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import types
from collections.abc import Iterator
from typing import Any

import pytest
from net_support import LIVENESS, fd_count

from ioreactor.loop.event_loop import EventLoop
from ioreactor.loop.poller import FD_SETSIZE
from ioreactor.net import connector as connector_mod
from ioreactor.net.address import to_address
from ioreactor.net.connector import Connector
from ioreactor.testing import free_port, run_until

pytestmark = pytest.mark.timeout(60)


class Outcome:
    def __init__(self) -> None:
        self.connected: list[tuple[socket.socket, Any]] = []
        self.failed: list[OSError] = []

    def on_connected(self, sock: socket.socket, peer: Any) -> None:
        self.connected.append((sock, peer))

    def on_failed(self, exc: OSError) -> None:
        self.failed.append(exc)

    def done(self) -> bool:
        return bool(self.connected or self.failed)

    def close(self) -> None:
        for sock, _ in self.connected:
            sock.close()


@pytest.fixture
def outcome() -> Iterator[Outcome]:
    o = Outcome()
    yield o
    o.close()


def make(loop: EventLoop, port: int, outcome: Outcome, **kw: Any) -> Connector:
    return Connector(
        loop, to_address(("127.0.0.1", port)), outcome.on_connected, outcome.on_failed, **kw
    )


def test_connect_success(loop: EventLoop, outcome: Outcome) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    try:
        port = listener.getsockname()[1]
        base = loop.watched_fds()
        connector = make(loop, port, outcome)
        connector.start()
        run_until(loop, outcome.done)
        sock, peer = outcome.connected[0]
        assert peer == ("127.0.0.1", port)
        assert sock.getpeername() == peer and not sock.getblocking()
        assert connector.attempts == 1 and not outcome.failed
        assert loop.watched_fds() == base, "the connector hands the fd over, unwatched"
        assert loop._timers.next_deadline() is None, "the timeout timer is cancelled"
        server_side, _ = listener.accept()
        server_side.close()
    finally:
        listener.close()


def test_refused_without_retry_fails_once(loop: EventLoop, outcome: Outcome) -> None:
    before = fd_count()
    make(loop, free_port(), outcome, retry=False).start()
    run_until(loop, outcome.done)
    assert [e.errno for e in outcome.failed] == [errno.ECONNREFUSED]
    assert fd_count() == before


def test_refused_retries_with_capped_backoff(
    loop: EventLoop, outcome: Outcome, caplog: pytest.LogCaptureFixture
) -> None:
    connector = make(
        loop, free_port(), outcome, max_attempts=6, backoff_initial=0.01, backoff_max=0.04
    )
    with caplog.at_level(logging.INFO, logger="ioreactor.connector"):
        connector.start()
        run_until(loop, outcome.done)
    assert connector.attempts == 6
    assert [e.errno for e in outcome.failed] == [errno.ECONNREFUSED]
    delays = [
        float(m.group(2))
        for r in caplog.records
        if (m := re.search(r"retry (\d+) in ([\d.]+) s", r.getMessage()))
    ]
    assert len(delays) == 5, "five retries between six attempts"
    assert all(d <= 0.04 for d in delays), delays


def test_next_delay_is_exponential_jittered_and_capped(loop: EventLoop) -> None:
    connector = Connector(
        loop, to_address(("127.0.0.1", 1)), lambda s, p: None, backoff_initial=0.5, backoff_max=30
    )
    for attempts, base in [(0, 0.5), (1, 0.5), (2, 1.0), (3, 2.0), (6, 16.0), (7, 30.0)]:
        connector.attempts = attempts
        samples = [connector.next_delay() for _ in range(200)]
        assert all(0.5 * base <= d <= base for d in samples), (attempts, min(samples))
        assert max(samples) - min(samples) > 0.1 * base, "jitter spreads the delays"
    for attempts in (100, 1100, 10**6):  # a client that retried for days
        connector.attempts = attempts
        assert 15.0 <= connector.next_delay() <= 30.0


@pytest.fixture
def unanswered_port() -> Iterator[int]:
    """The port of a listener with backlog 0 and a full queue: it drops SYNs, so a
    connect to it never ends."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port: int = listener.getsockname()[1]
    fillers = [socket.socket() for _ in range(3)]
    try:
        for f in fillers:
            f.setblocking(False)
            f.connect_ex(("127.0.0.1", port))
        yield port
    finally:
        for f in fillers:
            f.close()
        listener.close()


def test_timeout_when_the_server_never_answers(
    loop: EventLoop, outcome: Outcome, unanswered_port: int
) -> None:
    before = fd_count()
    base = loop.watched_fds()
    connector = make(loop, unanswered_port, outcome, timeout=0.2, retry=False)
    start = time.monotonic()
    connector.start()
    run_until(loop, outcome.done)
    assert [e.errno for e in outcome.failed] == [errno.ETIMEDOUT]
    assert time.monotonic() - start >= 0.2
    assert loop.watched_fds() == base and fd_count() == before


def test_timeouts_are_retried(loop: EventLoop, outcome: Outcome, unanswered_port: int) -> None:
    connector = make(
        loop, unanswered_port, outcome, timeout=0.05, max_attempts=3, backoff_initial=0.01
    )
    connector.start()
    run_until(loop, outcome.done)
    assert connector.attempts == 3
    assert [e.errno for e in outcome.failed] == [errno.ETIMEDOUT]


def test_stop_abandons_the_attempt_and_the_retry(loop: EventLoop, outcome: Outcome) -> None:
    before = fd_count()
    connector = make(loop, free_port(), outcome, backoff_initial=0.05)
    connector.start()
    loop.run_once(0.01)  # refused: a retry is scheduled
    connector.stop()
    for _ in range(10):
        loop.run_once(0.02)
    assert not outcome.done()
    assert fd_count() == before
    assert loop._timers.next_deadline() is None


def test_start_while_connecting_does_not_leak_the_first_socket(
    loop: EventLoop, outcome: Outcome, unanswered_port: int
) -> None:
    before = fd_count()
    base = loop.watched_fds()
    connector = make(loop, unanswered_port, outcome, timeout=LIVENESS)
    connector.start()
    connector.start()  # restart while the first attempt hangs
    assert loop.watched_fds() == base + 1
    assert fd_count() == before + 1
    connector.stop()
    assert fd_count() == before and loop.watched_fds() == base


# -- self-connect ---------------------------------------------------------------------------


def test_self_connect_is_detected(
    loop: EventLoop, outcome: Outcome, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each connector socket is bound to the very port it connects to.

    The kernel then completes a TCP simultaneous open of the socket with itself: what
    happens by chance when an ephemeral source port equals a local destination port
    with no listener. The connector must notice (local address == peer) and not report
    a connection. Only the connector module's ``socket`` name is replaced.
    """
    port = free_port()

    def self_bound(family: int, kind: int) -> socket.socket:
        sock = socket.socket(family, kind)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        return sock

    fake = types.SimpleNamespace(**vars(socket))
    fake.socket = self_bound
    monkeypatch.setattr(connector_mod, "socket", fake)
    before = fd_count()
    connector = make(loop, port, outcome, max_attempts=3, backoff_initial=0.01)
    connector.start()
    run_until(loop, outcome.done)
    assert connector.self_connects == 3
    assert outcome.connected == []
    assert outcome.failed[0].errno == errno.ECONNREFUSED
    assert outcome.failed[0].strerror == "self-connect"
    assert fd_count() == before


NETNS_SELF_CONNECT = r"""
import subprocess, sys
from ioreactor.loop.event_loop import EventLoop
from ioreactor.net.address import to_address
from ioreactor.net.connector import Connector

subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
with open("/proc/sys/net/ipv4/ip_local_port_range", "w") as f:
    f.write("40000 40000")  # this namespace only: every ephemeral port is 40000
loop = EventLoop()
result = []
c = Connector(loop, to_address(("127.0.0.1", 40000)), lambda s, p: result.append("connected"),
              lambda e: result.append(f"failed {e.errno}"), max_attempts=1)
c.start()
while not result:
    loop.run_once(0.1)
print(result[0], c.self_connects)
"""


@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare(1)")
def test_self_connect_through_the_ephemeral_port_in_a_private_netns() -> None:
    """In a namespace whose only ephemeral port is 40000, connecting to :40000 with no
    listener self-connects -- the real trap, no test double involved. (One attempt: the
    closed self-connection then holds the only port in TIME_WAIT, so a retry would get
    EADDRNOTAVAIL.)"""
    probe = subprocess.run(["unshare", "-n", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot create a network namespace here: {probe.stderr.decode()}")
    done = subprocess.run(
        ["unshare", "-n", sys.executable, "-c", NETNS_SELF_CONNECT],
        capture_output=True,
        text=True,
        timeout=LIVENESS,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["failed", str(errno.ECONNREFUSED), "1"]


def test_select_refusing_a_high_fd_fails_the_attempt_cleanly(outcome: Outcome) -> None:
    loop = EventLoop("select")
    listener = socket.create_server(("127.0.0.1", 0))
    spare = socket.socket()
    fillers = [os.dup(spare.fileno())]
    while fillers[-1] < FD_SETSIZE:  # the connector's socket gets a number above the limit
        fillers.append(os.dup(spare.fileno()))
    try:
        before = fd_count()
        make(loop, listener.getsockname()[1], outcome).start()  # must not raise
        assert outcome.connected == []
        assert len(outcome.failed) == 1 and "FD_SETSIZE" in str(outcome.failed[0])
        assert fd_count() == before, "the socket is closed"
    finally:
        for fd in fillers:
            os.close(fd)
        spare.close()
        listener.close()
        loop.close()


#: A connector whose retry finds the process out of fds (socket() fails with EMFILE),
#: then fds and the server come back. Run as a script: the fd limit is lowered only there.
OUT_OF_FDS_CLIENT = """
import logging, os, resource, socket, sys
from ioreactor.loop.event_loop import EventLoop
from ioreactor.net.address import to_address
from ioreactor.net.connector import Connector

logging.basicConfig(level=logging.INFO)
port = int(sys.argv[1])
loop = EventLoop("epoll")
connected, failed = [], []
connector = Connector(
    loop, to_address(f"127.0.0.1:{port}"), lambda sock, peer: connected.append(sock),
    failed.append, backoff_initial=0.1, backoff_max=0.2,
)
connector.start()  # nothing listens yet: refused, retried
resource.setrlimit(resource.RLIMIT_NOFILE, (256, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
hogs = []
def exhaust():
    while True:
        try:
            hogs.append(os.open(os.devnull, os.O_RDONLY))
        except OSError:
            return
def release():
    for fd in hogs:
        os.close(fd)
    hogs.clear()
listener = []
def listen():
    listener.append(socket.create_server(("127.0.0.1", port)))
loop.call_later(0.02, exhaust)  # the pending retry's socket() fails with EMFILE
loop.call_later(0.6, release)
loop.call_later(0.7, listen)
loop.call_later(5.0, loop.stop)
loop.call_every(0.05, lambda: connected and loop.stop())
loop.run()
print(len(connected), connector.attempts, [e.errno for e in failed])
"""


def test_running_out_of_fds_for_the_socket_itself_is_retried() -> None:
    """socket() failing with EMFILE raised out of the retry timer and left the connector
    dead (no timer, no socket, no on_failed): it is a retryable failure like any other."""
    proc = subprocess.run(
        [sys.executable, "-c", OUT_OF_FDS_CLIENT, str(free_port())],
        capture_output=True,
        text=True,
        timeout=LIVENESS,
    )
    assert proc.returncode == 0, proc.stderr
    connected, attempts, failed = proc.stdout.split(maxsplit=2)
    assert connected == "1", proc.stdout + proc.stderr
    assert int(attempts) >= 3 and failed.strip() == "[]"
    assert "Too many open files" in proc.stderr  # the EMFILE retry was logged, not raised
    assert "Traceback" not in proc.stderr
