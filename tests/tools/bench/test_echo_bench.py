"""`ioreactor bench echo` in a tiny mode: every server measured, table, JSON and chart."""

from __future__ import annotations

from pathlib import Path

from ioreactor_tools.bench.echo_bench import target_lines
from ioreactor_tools.bench.peers import uvloop_available
from ioreactor_tools.bench.report import BenchResult, read_json
from support.bench import CLOCK_ROUNDING
from support.cli_process import run_cli


def _row(name: str, cpu_seconds: float, round_no: int) -> BenchResult:
    row = BenchResult(name, 100, 1_000_000, 1.0, cpu_seconds, 1.0, 2.0, 3.0, 0)
    row.extra["round"] = round_no
    return row


def test_verdicts_are_the_median_of_the_per_round_ratios() -> None:
    rows = []
    for round_no, (ours, asyncio_cpu) in enumerate([(9.0, 10.0), (7.0, 10.0), (12.0, 10.0)]):
        for name, cpu in (("ioreactor", ours), ("asyncio", asyncio_cpu)):
            rows.append(_row(name, cpu, round_no))
    (line,) = target_lines(rows)  # no uvloop rows: no uvloop verdict
    assert line == (
        "100 conns: ioreactor / asyncio = 0.90 (meets the target <= 0.90) "
        "(rounds: 0.90, 0.70, 1.20)"
    )
    (single,) = target_lines([_row("ioreactor", 9.5, 0), _row("asyncio", 10.0, 0)])
    assert single == "100 conns: ioreactor / asyncio = 0.95 (MISSES the target <= 0.90)"


def test_tiny_bench_measures_all_three_servers(tmp_path: Path):
    proc = run_cli(
        "bench",
        "echo",
        "--conns",
        "10",
        "--duration",
        "0.5",
        "--rounds",
        "2",
        "--warmup",
        "0.2",
        "--out",
        str(tmp_path),
        "--no-progress",
        timeout=180,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    expected = ["ioreactor", "asyncio", "uvloop"]
    if (reason := uvloop_available()) is not None:
        expected.remove("uvloop")
        assert f"skipping uvloop: {reason}" in proc.stdout
    for name in expected:
        assert f"│ {name}" in proc.stdout
    assert "x asyncio" in proc.stdout and "user µs" in proc.stdout
    assert "round 2/2: ioreactor" in proc.stdout and "median of 2 rounds" in proc.stdout
    assert "ioreactor / asyncio =" in proc.stdout and "(rounds: " in proc.stdout
    [json_path] = tmp_path.glob("echo-*.json")
    doc, results = read_json(json_path)
    assert doc["command"].startswith("ioreactor bench echo --conns 10 ")
    assert doc["command"].endswith("--rounds 2")
    assert [(r.name, r.extra["round"]) for r in results] == [
        (name, round_no) for round_no in (0, 1) for name in expected
    ]
    for r in results:
        assert r.conns == 10 and r.extra["connected"] == 10
        assert r.ops > 0 and r.errors == {}
        assert r.server_cpu_seconds >= 0 and r.rss_bytes > 0
        assert r.server_user_seconds is not None
        assert 0 <= r.server_user_seconds <= r.server_cpu_seconds + CLOCK_ROUNDING
    assert json_path.with_suffix(".png").exists()


def test_ioreactor_echo_server_forks_workers_only_past_the_fd_limit() -> None:
    from ioreactor.net.sockopt import raise_nofile_limit
    from ioreactor_tools.bench.echo_bench import ioreactor_echo_command

    def workers(command: list[str]) -> int:
        return int(command[command.index("--workers") + 1])

    assert workers(ioreactor_echo_command(1, None, 100)) == 0  # one process, like the peers
    past_limit = raise_nofile_limit() + 1
    assert workers(ioreactor_echo_command(1, None, past_limit)) >= 2  # `--conns 20000`
