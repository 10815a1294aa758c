"""The echo load generator against real servers: counts, integrity, processes, CLI."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from ioreactor.echo import EchoHandler
from ioreactor.net.buffer import Buffer
from ioreactor.net.connection import TcpConnection
from ioreactor.net.server import TcpServer
from ioreactor.testing import LoopThread, free_port
from ioreactor_tools.bench.echo_load import EchoLoadConfig, run_echo_load, split_conns
from ioreactor_tools.bench.pinning import ServerProcess
from support.cli_process import run_cli

SIZE = 1024


@pytest.fixture(scope="module")
def echo_port() -> Iterator[int]:
    """A real `ioreactor echo` server process."""
    port = free_port()
    command = [sys.executable, "-m", "ioreactor", "echo", "--listen", f"127.0.0.1:{port}"]
    with ServerProcess(command, port=port):
        yield port


class CountingEcho(EchoHandler):
    """Echo that counts the bytes it received."""

    def __init__(self) -> None:
        self.received = 0

    def on_message(self, conn: TcpConnection, buffer: Buffer) -> None:
        self.received += len(buffer)
        super().on_message(conn, buffer)


class CorruptingEcho(EchoHandler):
    """Echo that flips one bit of the byte at stream offset ``at`` on every connection."""

    def __init__(self, at: int) -> None:
        self.at = at

    def on_connection(self, conn: TcpConnection) -> None:
        conn.context = 0

    def on_message(self, conn: TcpConnection, buffer: Buffer) -> None:
        data = bytearray(buffer.read_all())
        offset = self.at - conn.context
        if 0 <= offset < len(data):
            data[offset] ^= 0x01
        conn.context += len(data)
        conn.send(data)


def config(port: int, **changes: Any) -> EchoLoadConfig:
    base = EchoLoadConfig(host="127.0.0.1", port=port, conns=10, size=SIZE, duration=0.5)
    return dataclasses.replace(base, **changes)


def test_against_ioreactor_echo_no_errors_and_consistent_counts(echo_port: int):
    calls: list[str] = []
    result = run_echo_load(
        config(echo_port, pipeline=2, warmup=0.2, seed=1),
        on_start=lambda: calls.append("start"),
        on_end=lambda: calls.append("end"),
    )
    assert calls == ["start", "end"]
    assert result.errors == {}
    assert result.connected == result.conns == 10
    assert result.messages > 0
    assert result.bytes == result.messages * SIZE
    assert result.latency.count == result.messages  # one latency per counted message
    assert 0 < result.latency.percentile(0.5) <= result.latency.percentile(0.99)
    assert result.duration >= 0.5


def test_server_sees_exactly_the_bytes_counted():
    handler = CountingEcho()
    with LoopThread() as lt:
        server = lt.call(lambda: TcpServer(lt.loop, "127.0.0.1:0", handler).start())
        result = run_echo_load(config(server.port, size=3000, pipeline=3))
        assert result.errors == {}
        assert lt.call(lambda: handler.received) == result.messages * 3000


def test_corruption_is_detected():
    with LoopThread() as lt:
        server = lt.call(lambda: TcpServer(lt.loop, "127.0.0.1:0", CorruptingEcho(5000)).start())
        result = run_echo_load(config(server.port, conns=4, duration=5.0))
    # Every connection hits the flipped byte in its 5th message and is dropped; with no
    # connection left the window ends early.
    assert result.errors == {"integrity": 4}
    assert result.messages <= 4 * 4
    assert result.duration < 5.0


def test_refused_connects_are_counted_not_fatal():
    result = run_echo_load(config(free_port(), conns=5))
    assert result.connected == 0
    assert result.errors == {"connect:ECONNREFUSED": 5}
    assert result.messages == 0


def test_two_processes_merge(echo_port: int):
    result = run_echo_load(config(echo_port, conns=11, procs=2, seed=3))
    assert result.procs == 2
    assert result.connected == 11
    assert result.errors == {}
    assert result.messages > 0
    assert result.latency.count == result.messages
    assert split_conns(11, 2) == [6, 5]


def test_invalid_config_is_refused():
    with pytest.raises(ValueError, match="procs"):
        EchoLoadConfig(host="127.0.0.1", port=1, conns=2, procs=3)
    with pytest.raises(ValueError, match="size"):
        EchoLoadConfig(host="127.0.0.1", port=1, size=0)


def echo_client(*args: str) -> subprocess.CompletedProcess[str]:
    return run_cli("echo-client", *args, timeout=120)


def test_cli_reports_rate_latency_and_errors(echo_port: int):
    ok = echo_client("--connect", f"127.0.0.1:{echo_port}", "--conns", "5", "--duration", "0.5")
    assert ok.returncode == 0, ok.stderr
    assert "msg/s" in ok.stdout and "p99.9" in ok.stdout and "errors       none" in ok.stdout
    refused = echo_client(
        "--connect", f"127.0.0.1:{free_port()}", "--conns", "3", "--duration", "1"
    )
    assert refused.returncode == 1
    assert "connect:ECONNREFUSED 3" in refused.stdout
