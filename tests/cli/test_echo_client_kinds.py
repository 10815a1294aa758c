"""`ioreactor echo-client` drives every echo kind: UDP, Unix stream, Unix datagram."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.cli_process import run_cli

SERVER = "import sys\nfrom ioreactor.echo import serve_echo\nsys.exit(serve_echo(sys.argv[1:]))\n"


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def echo_addresses(tmp_path: Path) -> Iterator[list[str]]:
    addresses = [
        f"udp://127.0.0.1:{_free_udp_port()}",
        f"unix://{tmp_path}/echo.sock",
        f"unix-dgram://{tmp_path}/echo-dgram.sock",
    ]
    server = subprocess.Popen([sys.executable, "-c", SERVER, *addresses])
    deadline = time.monotonic() + 20
    while not ((tmp_path / "echo.sock").exists() and (tmp_path / "echo-dgram.sock").exists()):
        assert server.poll() is None, "echo server exited"
        assert time.monotonic() < deadline, "echo server did not start"
        time.sleep(0.05)
    yield addresses
    server.terminate()
    assert server.wait(20) == 0


def test_echo_client_drives_each_kind(echo_addresses: list[str]) -> None:
    for address in echo_addresses:
        result = run_cli(
            "echo-client",
            "--connect",
            address,
            "--conns",
            "3",
            "--size",
            "200",
            "--duration",
            "0.5",
            "--warmup",
            "0.1",
            timeout=60,
        )
        assert result.returncode == 0, f"{address}: {result.stdout}{result.stderr}"
        assert "errors       none" in result.stdout, address
        messages = int(result.stdout.split("messages")[1].split()[0].replace(",", ""))
        assert messages > 0, address


def test_procs_is_refused_for_other_kinds(echo_addresses: list[str]) -> None:
    result = run_cli(
        "echo-client",
        "--connect",
        echo_addresses[0],
        "--procs",
        "2",
        "--duration",
        "0.2",
        timeout=60,
    )
    assert result.returncode != 0 and "--procs applies to TCP only" in result.stderr
