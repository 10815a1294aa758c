"""`ioreactor heartbeat serve|connect` as real processes: pings, pongs, data, clean exits."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ioreactor.cli import main

CLI = [sys.executable, "-m", "ioreactor", "heartbeat"]
STAMP = r"\d\d:\d\d:\d\d\.\d\d\d"  # every line carries a timestamp


def unused_port() -> int:
    """A port nothing listened on a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for(log: Path, pattern: str, timeout: float = 20.0) -> re.Match[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        match = re.search(pattern, log.read_text(errors="replace"))
        if match:
            return match
        time.sleep(0.02)
    raise AssertionError(f"{pattern!r} not found in:\n{log.read_text(errors='replace')}")


@pytest.mark.timeout(60)
def test_serve_and_connect_exchange_pings_pongs_and_data(tmp_path: Path) -> None:
    server_log, client_log = tmp_path / "serve.log", tmp_path / "connect.log"
    with server_log.open("wb") as out:
        server = subprocess.Popen(
            [*CLI, "serve", "--listen", "127.0.0.1:0", "--interval", "0.1", "--misses", "2",
             "--keepalive", "60:10:3"],
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        port = wait_for(server_log, r"heartbeat server on 127\.0\.0\.1:(\d+)").group(1)
        with client_log.open("wb") as out:
            client = subprocess.run(
                [*CLI, "connect", "--connect", f"127.0.0.1:{port}", "--interval", "0.1",
                 "--misses", "2", "--data-every", "0.25", "--duration", "1.2"],
                stdout=out, stderr=subprocess.STDOUT, timeout=30,
            )  # fmt: skip
        assert client.returncode == 0
        server.send_signal(signal.SIGTERM)
        assert server.wait(20) == 0
    finally:
        server.kill()
        server.wait(10)
    client_text = client_log.read_text()
    server_text = server_log.read_text()
    assert re.search(rf"{STAMP} INFO ioreactor.heartbeat: connected to", client_text)
    assert re.search(rf"{STAMP} INFO ioreactor.heartbeat: ping seq=1 to", client_text)
    assert re.search(rf"{STAMP} INFO ioreactor.heartbeat: pong seq=1 from .* rtt=", client_text)
    assert "data echoed by" in client_text and "b'data 1'" in client_text
    assert re.search(r"ping seq=1 from .* answered", server_text)
    assert "data from" in server_text and "TCP keepalive" in server_text
    assert "is dead" not in client_text + server_text


@pytest.mark.timeout(60)
def test_client_retries_until_a_server_appears(tmp_path: Path) -> None:
    result = subprocess.run(
        [*CLI, "connect", "--connect", f"127.0.0.1:{unused_port()}", "--interval", "0.1",
         "--duration", "1.0"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert result.returncode == 0
    assert re.search(r"connect to .* failed .*; retry \d+ in", result.stderr)


@pytest.mark.parametrize(
    "args",
    [
        ["serve", "--keepalive", "60:10"],
        ["serve", "--interval", "0"],
        ["connect", "--misses", "x"],
        ["connect", "--misses", "0"],
    ],
)
def test_bad_arguments_are_usage_errors(
    args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        main(["heartbeat", *args])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("ioreactor: error: heartbeat ") and err.count("\n") == 1, err


@pytest.mark.timeout(120)
def test_bench_heartbeat_runs_both_parts_against_a_peer(tmp_path: Path) -> None:
    """A tiny run: the command, its servers and peers and its load work together."""
    result = subprocess.run(
        [sys.executable, "-m", "ioreactor", "bench", "heartbeat", "--conns", "20",
         "--interval", "0.2", "--duration", "0.5", "--warmup", "0.3", "--frame-conns", "4",
         "--servers", "ioreactor,asyncio", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=110,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "idle heartbeating connections" in result.stdout
    assert "decoded and echoed" in result.stdout
    assert len(list(tmp_path.glob("heartbeat-idle-*.json"))) == 1
    assert len(list(tmp_path.glob("heartbeat-frames-*.json"))) == 1
