"""The HTTP server, unchanged, on the completion-mode loop: keep-alive, pipelining,
request bodies, and zero-copy static files (sendfile on a duplicate fd, polled for
readiness through the same ring, after the completion-mode output has drained)."""

from __future__ import annotations

import http.client
import random
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from ioreactor.http.echo_app import HELLO, build_echo_app
from ioreactor.http.server import HttpServer
from ioreactor.net.uring.connection import UringConnection
from support.uring import UringLoopThread

pytestmark = pytest.mark.timeout(60)

LIVENESS = 20.0


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[UringLoopThread, HttpServer, bytes]]:
    blob = random.Random(9).randbytes(3 * 1024 * 1024 + 17)
    (tmp_path / "blob.bin").write_bytes(blob)
    with UringLoopThread() as lt:
        server = HttpServer(lt.loop, ("127.0.0.1", 0), build_echo_app(tmp_path))
        lt.call(server.start)
        try:
            yield lt, server, blob
        finally:
            lt.call(server.tcp.close)


def test_keep_alive_requests_bodies_and_static_files_on_one_connection(
    served: tuple[UringLoopThread, HttpServer, bytes],
) -> None:
    lt, server, blob = served
    client = http.client.HTTPConnection("127.0.0.1", lt.call(lambda: server.port), timeout=20)
    try:
        for _ in range(50):
            client.request("GET", "/")
            response = client.getresponse()
            assert (response.status, response.read()) == (200, HELLO.encode())
        body = random.Random(1).randbytes(1024 * 1024)
        client.request("POST", "/echo", body=body)
        response = client.getresponse()
        assert response.read() == body
        client.request("GET", "/static/blob.bin")
        response = client.getresponse()
        assert response.status == 200 and response.read() == blob
        client.request("GET", "/static/blob.bin", headers={"Range": "bytes=100-199"})
        response = client.getresponse()
        assert response.status == 206 and response.read() == blob[100:200]
        client.request("GET", "/")  # still the same connection, still in order
        assert client.getresponse().read() == HELLO.encode()
        conns = lt.call(lambda: list(server.tcp.connections))
        assert len(conns) == 1 and isinstance(conns[0], UringConnection)
    finally:
        client.close()


def test_pipelined_requests_are_answered_in_order(
    served: tuple[UringLoopThread, HttpServer, bytes],
) -> None:
    lt, server, _ = served
    port = lt.call(lambda: server.port)
    request = b"GET /echo HTTP/1.1\r\nHost: x\r\nX-N: %d\r\n\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=LIVENESS) as sock:
        sock.sendall(b"".join(request % i for i in range(64)))
        got = bytearray()
        while got.count(b"HTTP/1.1 200") < 64 or not got.endswith(b"X-N: 63\n"):
            chunk = sock.recv(1 << 20)
            assert chunk, "closed early"
            got += chunk
    positions = [got.index(b"X-N: %d\n" % i) for i in range(64)]
    assert positions == sorted(positions)
