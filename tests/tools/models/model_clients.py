"""Blocking test clients for the two protocols, checking every byte they get back."""

from __future__ import annotations

import os
import socket

from ioreactor.testing import recv_exactly
from support.http import parse_responses

HELLO_RESPONSE = (
    b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\nContent-Type: text/plain\r\n"
    b"Connection: keep-alive\r\n\r\nHello, World!"
)


def echo_session(address: tuple[str, int], sizes: tuple[int, ...] = (1, 1000, 70000, 5)) -> None:
    """Send random payloads of the given sizes and require each back byte for byte."""
    with socket.create_connection(address, timeout=10) as sock:
        for size in sizes:
            payload = os.urandom(size)
            sock.sendall(payload)
            assert recv_exactly(sock, size) == payload
        sock.shutdown(socket.SHUT_WR)
        assert sock.recv(1) == b"", "the server must close after our FIN"


def http_session(address: tuple[str, int], requests: int = 3, pipelined: int = 2) -> None:
    """Send keep-alive ``GET /`` requests in pipelined groups; check each response."""
    request = b"GET / HTTP/1.1\r\nHost: test\r\n\r\n"
    with socket.create_connection(address, timeout=10) as sock:
        for _ in range(requests):
            sock.sendall(request * pipelined)
            raw = recv_exactly(sock, len(HELLO_RESPONSE) * pipelined)
            assert raw == HELLO_RESPONSE * pipelined
            responses = parse_responses(raw)
            assert [r.status for r in responses] == [200] * pipelined
            assert [r.body for r in responses] == [b"Hello, World!"] * pipelined


SESSIONS = {"echo": echo_session, "http": http_session}
