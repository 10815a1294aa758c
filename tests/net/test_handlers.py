"""The callback interfaces: which handler methods a connection calls (``overrides``,
``reads_in_place``), and what each callback says about itself."""

from __future__ import annotations

import logging
import socket

import pytest

from ioreactor.echo import EchoHandler
from ioreactor.http.echo_app import build_echo_app
from ioreactor.http.handler import HttpHandler
from ioreactor.net.buffer import Buffer
from ioreactor.net.connection import TcpConnection
from ioreactor.net.handlers import (
    ConnectionOwner,
    DatagramHandler,
    Handler,
    overrides,
    reads_in_place,
)
from ioreactor.net.server import TcpServer
from ioreactor.testing import LoopThread, recv_exactly


class OwnOnMessage(EchoHandler):
    def on_message(self, conn: TcpConnection, buffer: Buffer) -> None:
        buffer.retrieve_all()


class Both(OwnOnMessage):
    def on_read(self, conn: TcpConnection, data: memoryview) -> int:
        return len(data)


class Inherits(EchoHandler):
    pass


def test_overrides_names_methods_replaced_below_handler() -> None:
    assert overrides(EchoHandler(), "on_message")
    assert not overrides(EchoHandler(), "on_write_complete")
    assert not overrides(Handler(), "on_message")


def test_reads_in_place_only_when_on_read_is_as_derived_as_on_message() -> None:
    assert not reads_in_place(Handler())
    assert reads_in_place(EchoHandler())
    assert reads_in_place(Inherits())
    # A subclass replacing only on_message must see every byte there, not in the
    # on_read it inherited and does not know about.
    assert not reads_in_place(OwnOnMessage())
    assert reads_in_place(Both())


def test_every_callback_says_what_it_is_for_in_one_line() -> None:
    for cls in (Handler, DatagramHandler, ConnectionOwner):
        methods = [n for n, v in vars(cls).items() if callable(v) and not n.startswith("_")]
        assert methods, cls
        for name in methods:
            doc = getattr(cls, name).__doc__
            assert doc and "\n" not in doc.strip(), f"{cls.__name__}.{name}: {doc!r}"


def test_datagram_handler_defaults_log_errors_and_drops(caplog: pytest.LogCaptureFixture) -> None:
    class Endpoint:
        max_datagram = 10

    handler = DatagramHandler()
    with caplog.at_level(logging.WARNING, logger="ioreactor.udp"):
        handler.on_error(Endpoint(), ConnectionRefusedError(111, "refused"))  # type: ignore[arg-type]
        handler.on_truncated(Endpoint(), 99, ("127.0.0.1", 9))  # type: ignore[arg-type]
    messages = [r.getMessage() for r in caplog.records]
    assert any("refused" in m for m in messages)
    assert any("99-byte datagram" in m and "limit 10 bytes" in m for m in messages)


class Shouting(EchoHandler):
    """A plain-Python subclass whose on_read replaces the (compiled) echo's."""

    def on_read(self, conn: TcpConnection, data: memoryview) -> int:
        conn.send(bytes(data).upper())
        return len(data)


class CountingHttp(HttpHandler):
    """A plain-Python subclass that looks at every read, then parses it as usual."""

    reads = 0

    def on_read(self, conn: TcpConnection, data: memoryview) -> int:
        CountingHttp.reads += 1
        return super().on_read(conn, data)


def test_a_python_subclass_on_read_is_called_on_a_real_connection() -> None:
    """The compiled build reads the loop's buffer in C for its own handlers only: a
    Python override of on_read is what runs (on both builds)."""
    with LoopThread("epoll") as lt:
        server = lt.call(TcpServer(lt.loop, ("127.0.0.1", 0), Shouting()).start)
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            sock.sendall(b"ping")
            assert recv_exactly(sock, 4) == b"PING"
        lt.call(server.close)
        http = lt.call(TcpServer(lt.loop, ("127.0.0.1", 0), CountingHttp(build_echo_app())).start)
        with socket.create_connection(("127.0.0.1", http.port), timeout=5) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            assert recv_exactly(sock, 17) == b"HTTP/1.1 200 OK\r\n"
        lt.call(http.close)
    assert CountingHttp.reads >= 1
