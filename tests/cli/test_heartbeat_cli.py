"""`ioreactor heartbeat serve|connect` as real processes: pings, pongs, data, clean exits."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from ioreactor.cli import main
from ioreactor.testing import free_port
from ioreactor_tools.bench.report import read_json
from support.cli_process import CliProcess, run_cli

CLI = [sys.executable, "-m", "ioreactor", "heartbeat"]
STAMP = r"\d\d:\d\d:\d\d\.\d\d\d"  # every line carries a timestamp


@pytest.mark.timeout(60)
def test_serve_and_connect_exchange_pings_pongs_and_data(tmp_path: Path) -> None:
    client_log = tmp_path / "connect.log"
    with CliProcess(
        tmp_path, "heartbeat", "serve", "--listen", "127.0.0.1:0", "--interval", "0.1",
        "--misses", "2", "--keepalive", "60:10:3", name="serve",
    ) as server:  # fmt: skip
        port = server.wait_for(r"heartbeat server on 127\.0\.0\.1:(\d+)").group(1)
        with client_log.open("wb") as out:
            client = subprocess.run(
                [*CLI, "connect", "--connect", f"127.0.0.1:{port}", "--interval", "0.1",
                 "--misses", "2", "--data-every", "0.25", "--duration", "1.2"],
                stdout=out, stderr=subprocess.STDOUT, timeout=30,
            )  # fmt: skip
        assert client.returncode == 0
        assert server.stop(signal.SIGTERM) == 0
        server_text = server.log()
    client_text = client_log.read_text()
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
        [*CLI, "connect", "--connect", f"127.0.0.1:{free_port()}", "--interval", "0.1",
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
    result = run_cli(
        "bench", "heartbeat", "--conns", "20", "--interval", "0.2", "--duration", "0.5",
        "--warmup", "0.3", "--frame-conns", "4", "--servers", "ioreactor,asyncio",
        "--out", str(tmp_path), timeout=110,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "idle heartbeating connections" in result.stdout
    assert "decoded and echoed" in result.stdout
    for part in ("idle", "frames"):
        [path] = tmp_path.glob(f"heartbeat-{part}-*.json")
        _, results = read_json(path)
        # every server (the asyncio peer too) answered its pings / echoed its frames intact
        assert [r.name for r in results] == ["ioreactor", "asyncio"]
        assert all(r.ops > 0 and r.errors == {} for r in results), results
        if part == "frames":  # counted in frames: 16 in each echoed batch
            assert all(r.unit == "frame" for r in results)
            assert all(r.ops == 16 * r.extra["batches"] for r in results)
