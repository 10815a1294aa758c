"""BenchResult, the ratio table, the JSON round trip and the chart."""

from __future__ import annotations

import importlib.util
import io
import math
from dataclasses import replace
from pathlib import Path

import pytest
from rich.console import Console

from ioreactor_tools.bench.chart import bar_chart
from ioreactor_tools.bench.report import (
    BenchResult,
    markdown_table,
    print_table,
    ratio,
    ratio_target_lines,
    read_json,
    workload_target_lines,
    write_json,
)
from support.bench import workload_row


def result(name: str, conns: int, cpu: float, ops: int = 100_000) -> BenchResult:
    return BenchResult(
        name=name,
        conns=conns,
        ops=ops,
        duration=10.0,
        server_cpu_seconds=cpu,
        server_user_seconds=cpu / 4,
        p50_us=80.0,
        p99_us=300.0,
        p999_us=900.0,
        rss_bytes=30 * 2**20,
        errors={"integrity": 1} if name == "ioreactor" else {},
    )


RESULTS = [
    result("ioreactor", 100, 0.8),
    result("asyncio", 100, 1.0),
    result("ioreactor", 1000, 1.8),
    result("asyncio", 1000, 2.0),
]


def test_cpu_per_op_and_ratio_at_the_same_conns():
    ours = RESULTS[0]
    assert ours.cpu_us_per_op == pytest.approx(8.0)
    assert ours.ops_per_s == pytest.approx(10_000)
    assert ratio(ours, RESULTS, "asyncio") == pytest.approx(0.8)
    assert ratio(RESULTS[2], RESULTS, "asyncio") == pytest.approx(0.9)
    assert ratio(ours, RESULTS, "uvloop") is None
    assert ours.user_us_per_op == pytest.approx(2.0)
    assert ours.system_us_per_op == pytest.approx(6.0)
    unknown = BenchResult("x", 1, 10, 1.0, 1.0, 1.0, 1.0, 1.0, 0)
    assert unknown.user_us_per_op != unknown.user_us_per_op  # NaN: not measured


def test_table_shows_every_server_and_the_ratio_column():
    out = io.StringIO()
    print_table(RESULTS, ["asyncio"], console=Console(file=out, width=200))
    text = out.getvalue()
    assert "x asyncio" in text and "0.80" in text and "0.90" in text
    assert "integrity 1" in text
    md = markdown_table(RESULTS, ["asyncio"])
    assert md.count("\n") == 1 + len(RESULTS)
    assert "| ioreactor | 1,000 | 18.00 | 4.50 |" in md  # CPU, then its user part


def test_json_round_trip(tmp_path: Path):
    path = write_json(tmp_path / "r.json", RESULTS, command="ioreactor bench echo", meta={"x": 1})
    doc, loaded = read_json(path)
    assert doc["command"] == "ioreactor bench echo"
    assert doc["results"][0]["cpu_us_per_op"] == pytest.approx(8.0)
    assert loaded == RESULTS


@pytest.mark.skipif(importlib.util.find_spec("matplotlib") is None, reason="needs matplotlib")
def test_chart_is_a_png(tmp_path: Path):
    path = bar_chart(RESULTS, tmp_path / "c.png", title="echo")
    assert path is not None
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_workload_verdicts_judge_the_median_round_and_show_each() -> None:
    rows = [
        workload_row(name, "hello", cpu, round_no=round_no)
        for round_no, (ours, theirs) in enumerate([(9.0, 10.0), (12.0, 10.0), (7.0, 10.0)])
        for name, cpu in (("ioreactor", ours), ("uvicorn", theirs))
    ]
    assert workload_target_lines(rows, {"hello": {"uvicorn": 0.95, "granian": 1.0}}) == [
        "hello, 100 conns: ioreactor / uvicorn = 0.90 (meets the target <= 0.95) "
        "(rounds: 0.90, 1.20, 0.70)"
    ]  # no granian rows: no granian verdict
    assert ratio_target_lines(rows[:2], {"uvicorn": 0.85}, label="ioreactor.aio") == [
        "100 conns: ioreactor.aio / uvicorn = 0.90 (MISSES the target <= 0.85)"
    ]


def test_what_a_load_does_not_measure_is_a_dash_not_nan():
    wrk_like = replace(RESULTS[0], p999_us=math.nan, server_user_seconds=None)
    out = io.StringIO()
    print_table([wrk_like], [], console=Console(file=out, width=200))
    row = next(line for line in out.getvalue().splitlines() if "ioreactor" in line)
    assert "nan" not in row and row.count("—") == 2, row
