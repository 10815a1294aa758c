"""The protocol handlers on a socketpair: HTTP edge cases the models inherit."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest
from model_clients import HELLO_RESPONSE

from ioreactor.testing import recv_exactly
from ioreactor_tools.models.handlers import echo_until_closed, http_until_closed


@pytest.fixture
def http_peer() -> Iterator[socket.socket]:
    client, server = socket.socketpair()
    client.settimeout(5)

    def serve() -> None:
        with server:
            http_until_closed(server)

    thread = threading.Thread(target=serve)
    thread.start()
    yield client
    client.close()
    thread.join(5)
    assert not thread.is_alive()


def read_all(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(4096):
        data += chunk
    return data


def test_echo_returns_when_peer_half_closes() -> None:
    client, server = socket.socketpair()
    with client, server:
        thread = threading.Thread(target=echo_until_closed, args=(server,))
        thread.start()
        client.sendall(b"abc")
        client.shutdown(socket.SHUT_WR)
        assert recv_exactly(client, 3) == b"abc"
        thread.join(5)
        assert not thread.is_alive()


def test_http_request_split_at_every_byte(http_peer: socket.socket) -> None:
    for byte in b"GET / HTTP/1.1\r\nHost: x\r\n\r\n":
        http_peer.sendall(bytes([byte]))
    assert recv_exactly(http_peer, len(HELLO_RESPONSE)) == HELLO_RESPONSE


def test_http_unknown_path_is_404(http_peer: socket.socket) -> None:
    http_peer.sendall(b"GET /nope HTTP/1.1\r\nHost: t\r\n\r\n")
    assert http_peer.recv(4096).startswith(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n")


def test_http_10_without_keep_alive_is_closed(http_peer: socket.socket) -> None:
    http_peer.sendall(b"GET / HTTP/1.0\r\n\r\nGET / HTTP/1.0\r\n\r\n")
    reply = read_all(http_peer)
    assert reply.count(b"HTTP/1.1 200") == 1, "a request after Connection: close is ignored"
    assert b"Connection: close\r\n" in reply


def test_http_garbage_gets_400_and_close(http_peer: socket.socket) -> None:
    http_peer.sendall(b"NOT HTTP AT ALL\r\n\r\n")
    assert read_all(http_peer).startswith(b"HTTP/1.1 400 Bad Request\r\n")
