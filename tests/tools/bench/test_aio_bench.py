"""`ioreactor bench aio` in a tiny mode: each workload on each loop, tables, JSON, charts."""

from __future__ import annotations

from pathlib import Path

from ioreactor_tools.bench.aio_bench import target_lines
from ioreactor_tools.bench.peers import uvloop_available
from ioreactor_tools.bench.report import read_json
from support.bench import CLOCK_ROUNDING, workload_row
from support.cli_process import run_cli


def test_each_workload_is_judged_against_its_own_targets() -> None:
    rows = [
        workload_row("ioreactor", "protocol-echo", 7.0),
        workload_row("asyncio", "protocol-echo", 10.0),
        workload_row("uvloop", "protocol-echo", 6.0),
        workload_row("ioreactor", "streams-echo", 9.0),
        workload_row("asyncio", "streams-echo", 10.0),
    ]
    assert target_lines(rows) == [
        "protocol-echo, 100 conns: ioreactor.aio / asyncio = 0.70 (meets the target <= 0.80)",
        "protocol-echo, 100 conns: ioreactor.aio / uvloop = 1.17 (MISSES the target <= 1.00)",
        "streams-echo, 100 conns: ioreactor.aio / asyncio = 0.90 (MISSES the target <= 0.85)",
    ]


def test_tiny_bench_runs_every_workload_on_every_loop(tmp_path: Path) -> None:
    proc = run_cli(
        "bench",
        "aio",
        "--conns",
        "4",
        "--duration",
        "0.4",
        "--warmup",
        "0.1",
        "--out",
        str(tmp_path),
        timeout=240,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    loops = ["ioreactor", "asyncio", "uvloop"]
    if uvloop_available() is not None:
        loops.remove("uvloop")
    [json_path] = tmp_path.glob("aio-*.json")
    _, results = read_json(json_path)
    workloads = ["protocol-echo", "streams-echo", "aiohttp-hello"]
    assert [(r.extra["workload"], r.name) for r in results] == [
        (w, loop) for w in workloads for loop in loops
    ]
    for r in results:
        assert r.ops > 0 and r.errors == {}, r
        assert 0 <= r.server_user_seconds <= r.server_cpu_seconds + CLOCK_ROUNDING
    for workload in workloads:
        assert f"{workload}: ioreactor.aio vs asyncio" in proc.stdout
        assert json_path.with_name(f"{json_path.stem}-{workload}.png").exists()
    assert "protocol-echo, 4 conns: ioreactor.aio / asyncio =" in proc.stdout
