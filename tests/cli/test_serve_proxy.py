"""``ioreactor serve`` behind a proxy: the application sees the client's address from a
PROXY protocol header (``--proxy-protocol``) or from forwarding headers
(``--proxy-headers``), and only when the peer is in ``--proxy-allow-ips``."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from support.cli_process import TIMEOUT, http_get, start_serve
from support.proxy_protocol import encode_v1, encode_v2

WHOAMI = b"GET /whoami HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"


def exchange(port: int, data: bytes) -> bytes:
    """What the server answers before it closes (b"" when it closed, or reset, at once)."""
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        sock.sendall(data)
        reply = b""
        try:
            while chunk := sock.recv(65536):
                reply += chunk
        except ConnectionResetError:  # closed with our bytes unread
            pass
        return reply


@pytest.mark.parametrize("version", [1, 2])
@pytest.mark.parametrize("workers", ["0", "2"])
def test_a_proxy_header_from_a_trusted_peer_names_the_client(
    tmp_path: Path, version: int, workers: str
) -> None:
    server, port = start_serve(
        tmp_path, "--workers", workers, "--proxy-protocol", "--proxy-allow-ips", "127.0.0.1"
    )
    with server:
        client, local = ("203.0.113.7", 51234), ("10.0.0.1", 80)
        header = (
            encode_v1(socket.AF_INET, client, local)
            if version == 1
            else encode_v2(source=client, destination=local)
        )
        reply = exchange(port, header + WHOAMI)
        assert reply.startswith(b"HTTP/1.1 200 OK") and reply.endswith(
            b"\r\n\r\n203.0.113.7 51234\n"
        )
        assert exchange(port, WHOAMI) == b""  # no header from a trusted peer: closed
        assert server.stop() == 0


def test_a_peer_outside_the_trust_list_is_refused(tmp_path: Path) -> None:
    server, port = start_serve(
        tmp_path, "--workers", "0", "--proxy-protocol", "--proxy-allow-ips", "10.9.9.9"
    )
    with server:
        assert (
            exchange(port, encode_v1(socket.AF_INET, ("1.2.3.4", 1), ("5.6.7.8", 2)) + WHOAMI)
            == b""
        )
        server.wait_for(r"127\.0\.0\.1:\d+ is not a trusted proxy; closing")


def test_forwarding_headers_count_from_trusted_peers_only(tmp_path: Path) -> None:
    claims = {"X-Forwarded-For": "198.51.100.4", "X-Forwarded-Proto": "https"}
    trusted, port = start_serve(
        tmp_path, "--workers", "0", "--proxy-headers", "--proxy-allow-ips", "127.0.0.1",
        name="trusted",
    )  # fmt: skip
    with trusted:
        assert http_get(port, "/whoami", claims) == (200, "198.51.100.4 0\n")
        assert http_get(port, "/whoami")[1].startswith("127.0.0.1 ")  # none claimed
    untrusted, port = start_serve(
        tmp_path, "--workers", "0", "--proxy-headers", "--forwarded-allow-ips", "10.0.0.0/8",
        name="untrusted",
    )  # fmt: skip
    with untrusted:
        assert http_get(port, "/whoami", claims)[1].startswith("127.0.0.1 ")
