"""Application code that fails or blocks: the damage stays with one request or connection.

An exception in an HTTP handler is a 500 for that request; the same keep-alive
connection then serves the next request, and the server everyone else. An exception
in a TCP handler closes that connection only. A handler that blocks the loop is
reported by the loop's lag detector, and a blocking handler moved to the worker pool
(``blocking=True``) leaves the loop free.
"""

from __future__ import annotations

import http.client
import logging
import socket
import threading
import time
from collections.abc import Iterator

import pytest
from reliability_support import TIMEOUT

from ioreactor.http.app import App
from ioreactor.http.request import Request
from ioreactor.http.server import HttpServer
from ioreactor.net.buffer import Buffer
from ioreactor.net.connection import TcpConnection
from ioreactor.net.handlers import Handler
from ioreactor.net.server import TcpServer
from ioreactor.testing import LoopThread
from support.http import http_get

#: How long the blocking handlers block: well above the loop's slow-iteration threshold.
BLOCK = 0.3


def faulty_app(release: threading.Event) -> App:
    """The failing and blocking routes; ``/wait-in-pool`` holds a pool thread until
    ``release`` is set."""
    app = App()

    @app.route("/")
    def hello(request: Request) -> str:
        return "Hello, World!"

    @app.route("/boom")
    def boom(request: Request) -> str:
        raise RuntimeError("the handler broke")

    @app.route("/boom-in-pool", blocking=True)
    def boom_in_pool(request: Request) -> str:
        raise RuntimeError("the pool handler broke")

    @app.route("/wrong-type")
    def wrong_type(request: Request) -> object:
        return 42

    @app.route("/block")
    def block(request: Request) -> str:
        time.sleep(BLOCK)  # the mistake the lag detector exists for
        return "blocked the loop"

    @app.route("/wait-in-pool", blocking=True)
    def wait_in_pool(request: Request) -> str:
        release.wait(TIMEOUT)
        return "blocked a pool thread"

    return app


@pytest.fixture
def release() -> threading.Event:
    return threading.Event()


@pytest.fixture
def server(release: threading.Event) -> Iterator[tuple[LoopThread, HttpServer]]:
    with LoopThread(name="handler-faults") as lt:
        srv = HttpServer(lt.loop, ("127.0.0.1", 0), faulty_app(release))
        lt.call(srv.start)
        try:
            yield lt, srv
        finally:
            lt.call(srv.close)


@pytest.mark.parametrize("path", ["/boom", "/boom-in-pool", "/wrong-type"])
def test_http_handler_exception_is_a_500_and_the_connection_goes_on(
    server: tuple[LoopThread, HttpServer], path: str, caplog: pytest.LogCaptureFixture
) -> None:
    _, srv = server
    caplog.set_level(logging.ERROR, logger="ioreactor")
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=TIMEOUT)
    try:
        conn.request("GET", path)
        failed = conn.getresponse()
        assert failed.status == 500
        failed.read()
        sock = conn.sock
        conn.request("GET", "/")
        after = conn.getresponse()
        assert (after.status, after.read()) == (200, b"Hello, World!")
        assert conn.sock is sock  # the same keep-alive connection
    finally:
        conn.close()
    assert http_get(srv.port) == 200
    assert any(r.levelno == logging.ERROR for r in caplog.records)  # and it was logged


class Fragile(Handler):
    """Echoes, but raises on ``boom``; records the connections that closed."""

    def __init__(self) -> None:
        self.closed: list[TcpConnection] = []

    def on_message(self, conn: TcpConnection, buffer: Buffer) -> None:
        data = buffer.read_all()
        if b"boom" in data:
            raise ValueError("the handler broke")
        conn.send(data)

    def on_close(self, conn: TcpConnection) -> None:
        self.closed.append(conn)


def test_tcp_handler_exception_closes_only_its_connection(loop_thread: LoopThread) -> None:
    handler = Fragile()
    srv = loop_thread.call(TcpServer(loop_thread.loop, ("127.0.0.1", 0), handler).start)
    with (
        socket.create_connection(("127.0.0.1", srv.port), timeout=TIMEOUT) as good,
        socket.create_connection(("127.0.0.1", srv.port), timeout=TIMEOUT) as bad,
    ):
        good.sendall(b"one")
        assert good.recv(100) == b"one"
        bad.sendall(b"boom")
        try:
            assert bad.recv(100) == b""  # closed by the server
        except ConnectionResetError:
            pass
        assert loop_thread.wait_until(lambda: len(handler.closed) == 1)
        assert isinstance(handler.closed[0].error, ValueError)
        good.sendall(b"two")
        assert good.recv(100) == b"two"
        assert loop_thread.call(lambda: srv.connection_count) == 1
    loop_thread.call(srv.close)


def test_a_blocking_handler_is_reported_by_the_lag_detector(
    server: tuple[LoopThread, HttpServer], caplog: pytest.LogCaptureFixture
) -> None:
    lt, srv = server
    caplog.set_level(logging.WARNING, logger="ioreactor.loop")
    before = lt.call(lt.loop.lag).slow_iterations
    with socket.create_connection(("127.0.0.1", srv.port), timeout=TIMEOUT) as sock:
        sock.sendall(b"GET /block HTTP/1.1\r\nHost: t\r\n\r\n")
        assert b"blocked the loop" in sock.recv(4096)
    # The iteration's time is recorded when it ends, which may be after this thread saw
    # the response (sent as the handler returned) and asked.
    assert lt.wait_until(lambda: lt.loop.lag().slow_iterations > before, TIMEOUT)
    lag = lt.call(lt.loop.lag)
    assert lag.max >= BLOCK
    warnings = [r.getMessage() for r in caplog.records if r.name == "ioreactor.loop"]
    assert any("event loop blocked for" in m and "run_in_pool" in m for m in warnings), warnings


def test_a_blocking_handler_in_the_pool_leaves_the_loop_free(
    server: tuple[LoopThread, HttpServer],
    release: threading.Event,
    caplog: pytest.LogCaptureFixture,
) -> None:
    lt, srv = server
    caplog.set_level(logging.WARNING, logger="ioreactor.loop")
    with socket.create_connection(("127.0.0.1", srv.port), timeout=TIMEOUT) as sock:
        sock.sendall(b"GET /wait-in-pool HTTP/1.1\r\nHost: t\r\n\r\n")
        assert lt.wait_until(
            lambda: any(c.context.queue.pending for c in srv.tcp.connections)
        )  # the handler holds a pool thread
        assert http_get(srv.port) == 200  # the loop answers others meanwhile
        release.set()
        assert b"blocked a pool thread" in sock.recv(4096)
    assert not [r for r in caplog.records if r.name == "ioreactor.loop"]
