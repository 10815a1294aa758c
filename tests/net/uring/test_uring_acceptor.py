"""UringAcceptor: multishot accept, the one-shot fallback, fd exhaustion, cancel on close."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from typing import Any

import pytest

from ioreactor.loop.uring.completion import ACCEPT
from ioreactor.loop.uring.ring import Ring
from ioreactor.net.acceptor import open_listener
from ioreactor.net.uring.acceptor import UringAcceptor
from ioreactor.testing import open_fds
from support.uring import UringLoopThread

pytestmark = pytest.mark.timeout(60)

LIVENESS = 20.0


class Collector:
    """on_accept target: keeps (sock, peer) pairs; touched on the loop thread only."""

    def __init__(self) -> None:
        self.accepted: list[tuple[socket.socket, Any]] = []

    def __call__(self, sock: socket.socket, peer: Any) -> None:
        self.accepted.append((sock, peer))


@pytest.fixture
def lt() -> Iterator[UringLoopThread]:
    with UringLoopThread() as thread:
        yield thread


def start_acceptor(lt: UringLoopThread, collector: Collector) -> UringAcceptor:
    def make() -> UringAcceptor:
        listener = open_listener(socket.AF_INET, ("127.0.0.1", 0))
        acceptor = UringAcceptor(lt.loop, listener, collector)
        acceptor.start()
        return acceptor

    return lt.call(make)


def test_multishot_accept_delivers_every_connection_with_its_peer(lt: UringLoopThread) -> None:
    collector = Collector()
    acceptor = start_acceptor(lt, collector)
    addr = lt.call(lambda: acceptor.listener.getsockname())
    clients = [socket.create_connection(addr, timeout=LIVENESS) for _ in range(200)]
    assert lt.wait_until(lambda: len(collector.accepted) == 200, LIVENESS)
    assert lt.call(lambda: acceptor.multishot)
    peers = {peer for _, peer in collector.accepted}
    assert peers == {c.getsockname() for c in clients}
    for sock, _ in collector.accepted:
        assert sock.gettimeout() == 0.0  # non-blocking, as accepted by the kernel
    # One accept in the kernel served all 200: still the same single operation.
    port = lt.port
    assert lt.call(lambda: sum(1 for ud in port.ops if ud & 0b111 == ACCEPT)) == 1
    for c in clients:
        c.close()
    lt.call(lambda: [sock.close() for sock, _ in collector.accepted])
    lt.call(acceptor.close)


def test_einval_for_multishot_falls_back_to_one_shot_accepts(
    lt: UringLoopThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A kernel without multishot accept answers EINVAL: simulated by sending such
    requests with flags the kernel rejects with EINVAL, so the real completion arrives."""
    real = Ring.prep_accept

    def no_multishot(
        self: Ring, fd: int, user_data: int, multishot: bool = False, flags: int = 0
    ) -> None:
        if multishot:
            real(self, fd, user_data, multishot=True, flags=1 << 30)  # kernel: EINVAL
        else:
            real(self, fd, user_data)

    monkeypatch.setattr(Ring, "prep_accept", no_multishot)
    collector = Collector()
    acceptor = start_acceptor(lt, collector)
    addr = lt.call(lambda: acceptor.listener.getsockname())
    clients = [socket.create_connection(addr, timeout=LIVENESS) for _ in range(20)]
    assert lt.wait_until(lambda: len(collector.accepted) == 20, LIVENESS)
    assert not lt.call(lambda: acceptor.multishot)
    for c in clients:
        c.close()
    lt.call(lambda: [sock.close() for sock, _ in collector.accepted])
    lt.call(acceptor.close)


def test_close_cancels_the_accept_and_frees_the_port(lt: UringLoopThread) -> None:
    collector = Collector()
    lt.call(lambda: None)
    before = open_fds()
    acceptor = start_acceptor(lt, collector)
    addr = lt.call(lambda: acceptor.listener.getsockname())
    port = lt.port
    lt.call(acceptor.close)
    assert lt.wait_until(lambda: len(port.ops) == 0, LIVENESS)  # the ECANCELED arrived
    with socket.socket() as probe:  # the listening socket is really gone
        assert probe.connect_ex(addr) != 0
    with socket.create_server(addr):  # and its port can be bound again at once
        pass
    assert lt.wait_until(lambda: open_fds() == before, LIVENESS)
    assert collector.accepted == []


_EMFILE_SERVER = textwrap.dedent(
    """
    import resource, signal, sys
    from ioreactor.echo import EchoHandler
    from ioreactor.loop.uring import create_loop
    from ioreactor.net.server import TcpServer

    loop = create_loop(name="emfile")
    server = TcpServer(loop, ("127.0.0.1", 0), EchoHandler()).start()
    import os
    limit = len(os.listdir("/proc/self/fd")) + 10  # room for ~10 connections
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))
    print(server.port, flush=True)

    def report():
        print(server._acceptor.rejected_for_fds, len(server.connections), flush=True)
        loop.stop()

    loop.add_signal_handler(signal.SIGTERM, report)
    loop.run()
    """
)


def test_fd_exhaustion_sheds_connections_and_recovers() -> None:
    """RLIMIT_NOFILE leaves room for ~10 connections; 40 arrive. The excess is accepted
    with the spare fd and closed (no spin, no hang), and once fds free up again new
    connections are served."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _EMFILE_SERVER],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        addr = ("127.0.0.1", port)
        clients = [socket.create_connection(addr, timeout=LIVENESS) for _ in range(40)]
        served, shed = 0, 0
        for c in clients:
            c.sendall(b"x")
            try:
                reply = c.recv(1)
            except ConnectionResetError:
                reply = b""
            served += reply == b"x"
            shed += reply == b""
        assert served >= 1 and shed >= 1 and served + shed == 40
        for c in clients:
            c.close()
        deadline = time.monotonic() + LIVENESS
        while True:  # the server frees the fds of the closed connections, then serves
            with socket.create_connection(addr, timeout=LIVENESS) as c:
                c.sendall(b"y")
                try:
                    if c.recv(1) == b"y":
                        break
                except ConnectionResetError:
                    pass  # shed: the server has not closed enough yet
            assert time.monotonic() < deadline, "the server did not recover"
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        rejected, _ = map(int, proc.stdout.readline().split())
        assert rejected >= shed
        assert proc.wait(LIVENESS) == 0
    finally:
        proc.kill()
        proc.wait()
