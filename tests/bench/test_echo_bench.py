"""`ioreactor bench echo` in a tiny mode: every server measured, table, JSON and chart."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from ioreactor.bench.peers import uvloop_available
from ioreactor.bench.report import read_json


def test_tiny_bench_measures_all_three_servers(tmp_path: Path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "ioreactor",
            "bench",
            "echo",
            "--conns",
            "10",
            "--duration",
            "1",
            "--warmup",
            "0.2",
            "--out",
            str(tmp_path),
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    expected = ["ioreactor", "asyncio", "uvloop"]
    if (reason := uvloop_available()) is not None:
        expected.remove("uvloop")
        assert f"skipping uvloop: {reason}" in proc.stdout
    for name in expected:
        assert f"│ {name}" in proc.stdout
    assert "x asyncio" in proc.stdout
    assert "ioreactor / asyncio =" in proc.stdout
    [json_path] = tmp_path.glob("echo-*.json")
    doc, results = read_json(json_path)
    assert doc["command"].startswith("ioreactor bench echo --conns 10 ")
    assert [r.name for r in results] == expected
    for r in results:
        assert r.conns == 10 and r.extra["connected"] == 10
        assert r.ops > 0 and r.errors == {}
        assert r.server_cpu_seconds >= 0 and r.rss_bytes > 0
    assert json_path.with_suffix(".png").exists()


def test_ioreactor_echo_server_forks_workers_only_past_the_fd_limit() -> None:
    from ioreactor.bench.echo_bench import ioreactor_echo_command
    from ioreactor.net.sockopt import raise_nofile_limit

    def workers(command: list[str]) -> int:
        return int(command[command.index("--workers") + 1])

    assert workers(ioreactor_echo_command(1, None, 100)) == 0  # one process, like the peers
    past_limit = raise_nofile_limit() + 1
    assert workers(ioreactor_echo_command(1, None, past_limit)) >= 2  # `--conns 20000`
