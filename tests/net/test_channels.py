"""Which connection and acceptor classes a loop gets: the readiness ones, or the io_uring
ones for a completion-mode loop -- what TcpServer and TcpClient build."""

from __future__ import annotations

import socket

import pytest

from ioreactor.loop.event_loop import EventLoop
from ioreactor.loop.poller import URING_POLLERS, available_pollers
from ioreactor.net.acceptor import Acceptor
from ioreactor.net.channels import acceptor_class, connection_class
from ioreactor.net.connection import TcpConnection
from ioreactor.net.handlers import Handler
from ioreactor.net.server import TcpServer
from ioreactor.testing import LoopThread

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize("name", [n for n in available_pollers() if n not in URING_POLLERS])
def test_readiness_loops_get_the_readiness_channels(name: str) -> None:
    loop = EventLoop(name)
    try:
        assert connection_class(loop) is TcpConnection
        assert acceptor_class(loop) is Acceptor
    finally:
        loop.close()


class Greeter(Handler):
    def __init__(self) -> None:
        self.kinds: list[type[TcpConnection]] = []

    def on_connection(self, conn: TcpConnection) -> None:
        self.kinds.append(type(conn))
        conn.send(b"hi")


def test_servers_build_the_channels_of_their_loop(poller_name: str) -> None:
    """Every backend of the suite's matrix, io_uring's completion loop included."""
    handler = Greeter()
    with LoopThread(poller_name) as lt:
        server = lt.call(lambda: TcpServer(lt.loop, ("127.0.0.1", 0), handler).start())
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            assert sock.recv(2) == b"hi"
        expected = connection_class(lt.loop)
        assert handler.kinds == [expected]
        assert lt.loop.completion_mode == (expected is not TcpConnection)
        if lt.loop.completion_mode:
            from ioreactor.net.uring import UringAcceptor, UringConnection

            assert expected is UringConnection and acceptor_class(lt.loop) is UringAcceptor
        lt.call(server.close)
