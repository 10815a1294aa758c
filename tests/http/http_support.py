"""Test helpers for the HTTP server: an in-thread harness and a live server (parsing the
responses: ``support.http``).

:class:`Harness` drives one server connection over a socketpair from the test's own
thread (``loop.run_once`` until nothing moves): deterministic, fast enough for Hypothesis,
and able to count the send system calls the connection makes. :func:`live_server` runs an
:class:`HttpServer` on a :class:`LoopThread` for real clients (http.client, curl).
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from ioreactor.http.app import App
from ioreactor.http.dispatch import Dispatcher
from ioreactor.http.echo_app import build_echo_app
from ioreactor.http.handler import HttpHandler
from ioreactor.http.limits import Limits
from ioreactor.http.protocol import HttpProtocol
from ioreactor.http.server import HttpServer
from ioreactor.loop.event_loop import EventLoop
from ioreactor.net.connection import TcpConnection
from ioreactor.testing import LoopThread
from support.http import Response, parse_responses


class CountingSocket:
    """A socket whose send/sendmsg calls are counted (every other call is passed on)."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self.sends = 0
        self.sent: list[int] = []

    def send(self, data: Any, *args: Any) -> int:
        self.sends += 1
        n = self._sock.send(data, *args)
        self.sent.append(n)
        return n

    def sendmsg(self, buffers: Any, *args: Any) -> int:
        self.sends += 1
        n = self._sock.sendmsg(buffers, *args)
        self.sent.append(n)
        return n

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


class Harness:
    """One HTTP connection on a loop the test spins itself; the client end is a socket."""

    def __init__(
        self,
        app: App | Dispatcher | None = None,
        limits: Limits | None = None,
        *,
        poller: str | None = None,
        high_water_mark: int | None = None,
        loop: EventLoop | None = None,
    ) -> None:
        self._own_loop = loop is None
        self.loop = loop if loop is not None else EventLoop(poller, name="http-harness")
        self.handler = HttpHandler(app or build_echo_app(), limits)
        server_end, self.client = socket.socketpair()
        server_end.setblocking(False)
        self.client.setblocking(False)
        self.sock = CountingSocket(server_end)
        kwargs: dict[str, int] = {}
        if high_water_mark is not None:
            kwargs = {"high_water_mark": high_water_mark, "low_water_mark": high_water_mark // 2}
        self.conn = TcpConnection(
            self.loop,
            self.sock,  # type: ignore[arg-type]
            ("harness", 0),
            self.handler,
            **kwargs,
        )
        self.conn.start()
        self.received = bytearray()
        self.eof = False

    @property
    def protocol(self) -> HttpProtocol:
        protocol: HttpProtocol = self.conn.context
        return protocol

    def spin(self, rounds: int = 50, *, read: bool = True) -> None:
        """Run loop iterations (and read what the server wrote) until nothing moves."""
        idle = 0
        for _ in range(rounds):
            before = len(self.received)
            self.loop.run_once(0)
            if read:
                self._drain()
            if len(self.received) == before and not self.loop._ready:
                idle += 1
                if idle >= 3:
                    return
            else:
                idle = 0

    def spin_until(self, done: Callable[[], bool], timeout: float = 20.0) -> None:
        """Spin until ``done()`` (work may finish on pool threads meanwhile)."""
        deadline = time.monotonic() + timeout
        while not done():
            assert time.monotonic() < deadline, "condition not reached in time"
            self.loop.run_once(0.02)
            self.spin()

    def _drain(self) -> None:
        while not self.eof:
            try:
                data = self.client.recv(1 << 20)
            except BlockingIOError:
                return
            except ConnectionResetError:
                self.eof = True
                return
            if not data:
                self.eof = True
                return
            self.received += data

    def send(self, data: bytes, *, spin: bool = True, read: bool = True) -> None:
        view = memoryview(data)
        while view:
            try:
                n = self.client.send(view)
            except BlockingIOError:
                if not read and not self.conn.reading:
                    raise  # the server stopped reading and the client will not read
                self.spin(5, read=read)
                continue
            except (BrokenPipeError, ConnectionResetError):
                return
            view = view[n:]
        if spin:
            self.spin(read=read)

    def send_split(self, data: bytes, size: int = 1) -> None:
        for i in range(0, len(data), size):
            self.send(data[i : i + size])

    def half_close(self) -> None:
        with contextlib.suppress(OSError):  # the server may have closed already
            self.client.shutdown(socket.SHUT_WR)
        self.spin()

    def responses(self) -> list[Response]:
        return parse_responses(bytes(self.received))

    def take(self) -> bytes:
        data = bytes(self.received)
        self.received.clear()
        return data

    def close(self) -> None:
        self.conn.force_close()
        self.loop.run_once(0)
        self.client.close()
        self.handler.close()
        if self._own_loop:
            self.loop.close()

    def __enter__(self) -> Harness:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def gated_slow_app() -> tuple[App, threading.Event]:
    """An app whose ``GET /slow`` runs in the worker pool and answers ``slow`` only once
    the returned event is set: responses pile up behind it until the test says so."""
    app = App()
    release = threading.Event()

    @app.route("/slow", blocking=True)
    def slow(request: Any) -> str:
        release.wait(10)
        return "slow"

    return app, release


@contextlib.contextmanager
def live_server(
    app: App | None = None,
    limits: Limits | None = None,
    *,
    poller: str | None = None,
    access_log: bool = False,
) -> Iterator[tuple[LoopThread, HttpServer]]:
    """An HttpServer on 127.0.0.1 (port 0) in a loop thread."""
    with LoopThread(poller, name="http-test") as lt:
        server = HttpServer(
            lt.loop, ("127.0.0.1", 0), app or build_echo_app(), limits=limits, access_log=access_log
        )
        lt.call(server.start)
        try:
            yield lt, server
        finally:
            lt.call(server.close)
