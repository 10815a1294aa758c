"""Only one server's workers share a port: a second server on it is refused.

SO_REUSEPORT lets every socket of the same user join a port's group; without a check a
second ``ioreactor`` started on a port the first one serves would start, log
"listening" and silently take half of its connections.
"""

from __future__ import annotations

import signal
import socket
from pathlib import Path

import pytest

from support.cli_process import CliProcess

LISTENING = r"supervisor \(pid \d+\) listening on tcp://127\.0\.0\.1:(\d+)"


def echo_once(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"ping")
        assert sock.recv(4) == b"ping"


@pytest.mark.parametrize("second", [["echo", "--workers", "2"], ["serve", "--workers", "2"]])
def test_a_second_server_on_a_served_port_gets_eaddrinuse(
    tmp_path: Path, second: list[str]
) -> None:
    with CliProcess(
        tmp_path, "echo", "--listen", "127.0.0.1:0", "--workers", "2", name="first"
    ) as first:
        port = int(first.wait_for(LISTENING).group(1))
        echo_once(port)
        with CliProcess(tmp_path, *second, "--listen", f"127.0.0.1:{port}", name="second") as other:
            assert other.wait() != 0, other.log()
        said = [line for line in other.log().splitlines() if "ERROR" in line]
        assert len(said) == 1 and "Address already in use" in said[0], other.log()
        assert "another server holds the port" in said[0]
        assert "listening" not in other.log() and "Traceback" not in other.log()
        for _ in range(8):  # every connection still reaches the first server
            echo_once(port)
        assert first.stop(signal.SIGTERM) == 0, first.log()


def test_a_restart_on_the_same_port_is_not_blocked_by_time_wait(tmp_path: Path) -> None:
    with CliProcess(
        tmp_path, "echo", "--listen", "127.0.0.1:0", "--workers", "2", name="first"
    ) as first:
        port = int(first.wait_for(LISTENING).group(1))
        idle = socket.create_connection(("127.0.0.1", port), timeout=10)
        idle.sendall(b"ping")
        assert idle.recv(4) == b"ping"
        assert first.stop(signal.SIGTERM) == 0  # the server closes first: TIME_WAIT is its
        assert idle.recv(1) == b""
        idle.close()
    with CliProcess(
        tmp_path, "echo", "--listen", f"127.0.0.1:{port}", "--workers", "2", name="again"
    ) as again:
        again.wait_for(LISTENING)
        echo_once(port)
        assert again.stop() == 0
