"""The two protocols every blocking model serves: TCP echo and a minimal HTTP echo.

A handler owns one connected, blocking socket until the peer closes it, the way the
course's per-process and per-thread servers do: read, decode, compute, encode, send,
all on one thread of control. HTTP is parsed by httptools (llhttp), never by hand.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable
from typing import Literal

import httptools

ProtocolName = Literal["echo", "http"]
ConnectionHandler = Callable[[socket.socket], None]

log = logging.getLogger(__name__)

PROTOCOLS: tuple[ProtocolName, ...] = ("echo", "http")

RECV_SIZE = 65536
HELLO = b"Hello, World!"


def echo_until_closed(conn: socket.socket) -> None:
    """Send every byte back until the peer half-closes, then return."""
    buf = bytearray(RECV_SIZE)
    view = memoryview(buf)
    while True:
        n = conn.recv_into(buf)
        if n == 0:
            return
        conn.sendall(view[:n])


def http_response(status: int, body: bytes, keep_alive: bool) -> bytes:
    """Encode a complete HTTP/1.1 response with a Content-Length, so keep-alive works."""
    reason = {200: "OK", 400: "Bad Request", 404: "Not Found"}[status]
    connection = b"keep-alive" if keep_alive else b"close"
    head = (
        f"HTTP/1.1 {status} {reason}\r\nContent-Length: {len(body)}\r\nContent-Type: text/plain\r\n"
    ).encode("ascii")
    return head + b"Connection: " + connection + b"\r\n\r\n" + body


class HttpExchange:
    """One connection's HTTP state: feed bytes in, take the encoded responses out.

    Transport-free, so the blocking handler below and the reactor models share it.
    """

    __slots__ = ("closing", "out", "parser", "url")

    def __init__(self) -> None:
        self.parser = httptools.HttpRequestParser(self)
        self.url = b""
        self.out: list[bytes] = []
        self.closing = False

    def feed(self, data: bytes) -> None:
        """Parse ``data``; complete requests append responses to ``out``."""
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self.closing = True  # this server speaks no other protocol: answer and close
        except httptools.HttpParserError:
            self.out.append(http_response(400, b"", keep_alive=False))
            self.closing = True

    def take(self) -> bytes:
        """Every response produced so far, as one buffer (one send for a pipeline)."""
        data = b"".join(self.out)
        self.out.clear()
        return data

    def on_message_begin(self) -> None:
        self.url = b""

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_message_complete(self) -> None:
        if self.closing:
            return  # pipelined after a "Connection: close" request: ignored, as RFC 9112 says
        keep_alive = bool(self.parser.should_keep_alive())
        found = self.parser.get_method() == b"GET" and self.url == b"/"
        self.out.append(http_response(200 if found else 404, HELLO if found else b"", keep_alive))
        self.closing = not keep_alive


def http_until_closed(conn: socket.socket) -> None:
    """Answer ``GET /`` with "Hello, World!" on a keep-alive connection.

    All responses produced by one read go out in one ``sendall``: pipelined requests cost
    one system call, not one each.
    """
    exchange = HttpExchange()
    while not exchange.closing:
        data = conn.recv(RECV_SIZE)
        if not data:
            return
        exchange.feed(data)
        if exchange.out:
            conn.sendall(exchange.take())


HANDLERS: dict[ProtocolName, ConnectionHandler] = {
    "echo": echo_until_closed,
    "http": http_until_closed,
}


def run_handler(handler: ConnectionHandler, conn: socket.socket) -> None:
    """Serve one connection until it ends; a peer that resets is routine, not an error.

    Closing ``conn`` is left to the caller, which may have to do it under its own lock.
    """
    try:
        handler(conn)
    except OSError as exc:
        log.debug("connection ended: %s", exc)
