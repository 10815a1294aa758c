"""The TLS flags of ``ioreactor echo`` and ``ioreactor heartbeat``: real processes, real
TLS clients (``ioreactor serve`` over HTTPS is in tests/http/test_https.py)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from ioreactor.testing import free_port, recv_exactly
from support.cli_process import run_cli
from support.tls import Pki, Served, shared_pki, tls_connect

TIMEOUT = 30.0


@pytest.fixture
def pki() -> Pki:
    return shared_pki()


def tls_flags(pki: Pki) -> list[str]:
    return ["--certfile", pki.server.cert, "--keyfile", pki.server.key]


@pytest.mark.parametrize("workers", ["0", "2"])
def test_echo_over_tls(pki: Pki, tmp_path: Path, workers: str) -> None:
    port = free_port()
    args = ["echo", "--listen", f"127.0.0.1:{port}", "--workers", workers, *tls_flags(pki)]
    with Served(args, port, tmp_path / "echo.log"):
        for i in range(4):
            with tls_connect(("127.0.0.1", port), pki.client_context()) as sock:
                sock.sendall(b"echo %d" % i)
                assert recv_exactly(sock, 6) == b"echo %d" % i


def test_echo_over_tls_on_a_unix_socket(pki: Pki, tmp_path: Path) -> None:
    path = tmp_path / "echo.sock"
    log = tmp_path / "echo.log"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ioreactor",
            "echo",
            "--listen",
            f"unix://{path}",
            "--workers",
            "0",
            *tls_flags(pki),
        ],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + TIMEOUT
        while not path.exists():
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        with tls_connect(str(path), pki.client_context()) as sock:
            sock.sendall(b"unix and tls")
            assert recv_exactly(sock, 12) == b"unix and tls"
    finally:
        process.terminate()
        process.wait(TIMEOUT)
    assert process.returncode == 0, log.read_text()


def test_echo_refuses_tls_with_several_listeners(pki: Pki) -> None:
    result = run_cli(
        "echo",
        "--listen",
        "127.0.0.1:0",
        "--listen",
        "udp://127.0.0.1:0",
        *tls_flags(pki),
        timeout=60,
    )
    assert result.returncode == 2
    assert "TLS serves one stream --listen" in result.stdout + result.stderr


def test_heartbeat_over_tls_with_a_client_certificate(pki: Pki, tmp_path: Path) -> None:
    port = free_port()
    serve = [
        "heartbeat",
        "serve",
        "--listen",
        f"127.0.0.1:{port}",
        "--interval",
        "0.2",
        *tls_flags(pki),
        "--ca-certs",
        pki.ca_file,
        "--client-cert",
        "required",
    ]
    with Served(serve, port, tmp_path / "server.log") as server:
        client = run_cli(
            "heartbeat",
            "connect",
            "--connect",
            f"127.0.0.1:{port}",
            "--interval",
            "0.2",
            "--duration",
            "1.5",
            "--ca-certs",
            pki.ca_file,
            "--certfile",
            pki.client.cert,
            "--keyfile",
            pki.client.key,
            timeout=60,
        )
        assert client.returncode == 0, client.stderr
        assert "pong seq=" in client.stderr, client.stderr
        stranger = run_cli(
            "heartbeat",
            "connect",
            "--connect",
            f"127.0.0.1:{port}",
            "--duration",
            "1",
            "--ca-certs",
            pki.ca_file,
            timeout=60,
        )
        assert "pong seq=" not in stranger.stderr
    assert "TLS handshake failed: peer did not return a certificate" in server.log()
