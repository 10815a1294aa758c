"""A WSGI application served in process (a loop thread, real loopback sockets), and
reading raw responses: the helpers of the tests in this folder."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator
from typing import Any

from ioreactor.http.limits import Limits
from ioreactor.http.server import HttpServer
from ioreactor.http.wsgi import WsgiDispatcher
from ioreactor.testing import LoopThread

TIMEOUT = 20.0


@contextlib.contextmanager
def wsgi_server(
    app: Any, *, limits: Limits | None = None, poller: str | None = None, **options: Any
) -> Iterator[tuple[HttpServer, WsgiDispatcher]]:
    """``app`` behind a :class:`WsgiDispatcher` (``options``) on 127.0.0.1, port 0."""
    dispatcher = WsgiDispatcher(app, **options)
    with LoopThread(poller, name="wsgi-test") as lt:
        server = HttpServer(lt.loop, ("127.0.0.1", 0), dispatcher, limits=limits)
        lt.call(server.start)
        try:
            yield server, dispatcher
        finally:
            lt.call(server.close)
            dispatcher.close()


def exchange(port: int, data: bytes, *, timeout: float = TIMEOUT) -> tuple[bytes, bool]:
    """Send ``data`` on a new connection, read until the server closes or ``timeout``
    passes without a byte; returns what was read and whether the server closed."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        received = bytearray()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                chunk = sock.recv(1 << 20)
            except TimeoutError:
                return bytes(received), False
            except ConnectionResetError:
                return bytes(received), True
            if not chunk:
                return bytes(received), True
            received += chunk
        return bytes(received), False


def get(path: str, *fields: str, version: str = "1.1", method: str = "GET") -> bytes:
    """A request that asks the server to close after it."""
    head = [f"{method} {path} HTTP/{version}", "Host: wsgi.test", *fields, "Connection: close"]
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1")
