"""``--proxy-protocol`` on any TCP server, not only HTTP: ``ioreactor echo`` behind a
proxy echoes what follows the header, and closes a connection that has none."""

from __future__ import annotations

import socket
from pathlib import Path

from support.cli_process import SERVING, TIMEOUT, CliProcess
from support.proxy_protocol import encode_v2


def test_echo_strips_a_trusted_proxy_header_and_refuses_a_missing_one(tmp_path: Path) -> None:
    with CliProcess(
        tmp_path, "echo", "--listen", "127.0.0.1:0", "--workers", "0", "--proxy-protocol",
        new_session=True,
    ) as server:  # fmt: skip
        port = int(server.wait_for(SERVING).group(1))
        header = encode_v2(source=("192.0.2.1", 4000), destination=("192.0.2.2", 7))
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
            sock.sendall(header + b"hello\n")
            assert sock.recv(100) == b"hello\n"
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
            sock.sendall(b"no header\n")
            try:
                assert sock.recv(100) == b""
            except ConnectionResetError:
                pass  # closed with our bytes unread
        server.wait_for(r"PROXY protocol: closing the connection from 127\.0\.0\.1:\d+: not a")
