"""`ioreactor bench http`'s engine: verdicts judged by the median of the per-round ratios
(the table showing each server's median round), and a missing wrk named when asked for."""

from __future__ import annotations

from pathlib import Path

from ioreactor_tools.bench.http_comparison import target_lines
from ioreactor_tools.bench.report import BenchResult, median_rounds, round_ratios
from support.cli_process import run_cli


def _row(name: str, conns: int, cpu_us: float, round_no: int) -> BenchResult:
    return BenchResult(
        name=name,
        conns=conns,
        ops=1_000_000,
        duration=1.0,
        server_cpu_seconds=cpu_us,
        p50_us=1.0,
        p99_us=2.0,
        p999_us=3.0,
        rss_bytes=0,
        unit="req",
        extra={"round": round_no},
    )


def test_rounds_show_the_median_round_and_judge_by_per_round_ratios() -> None:
    rows = [
        _row(name, 100, cpu, i)
        for i, (io, uv) in enumerate([(6.0, 5.0), (9.0, 9.0), (5.5, 6.0)])
        for name, cpu in (("ioreactor", io), ("uvloop", uv))
    ]
    shown = {r.name: r.cpu_us_per_op for r in median_rounds(rows)}
    assert shown == {"ioreactor": 6.0, "uvloop": 6.0}
    assert round_ratios(rows, "ioreactor", 100, "uvloop") == [1.2, 1.0, 5.5 / 6.0]
    (line,) = target_lines(rows, pipeline=1)
    assert line.startswith("100 conns: ioreactor / uvloop CPU per request = 1.000 (meets")
    assert line.endswith("(rounds: 1.20, 1.00, 0.92)")
    (piped,) = target_lines([_row("ioreactor", 256, 1.6, 0)], pipeline=16)
    assert "1.600 µs (MISSES the target <= 1 µs)" in piped and "rounds" not in piped


def test_load_wrk_without_wrk_says_so_and_measures_nothing(tmp_path: Path) -> None:
    out = run_cli(
        "bench",
        "http",
        "--load",
        "wrk",
        "--conns",
        "1",
        "--out",
        str(tmp_path),
        env={"PATH": str(tmp_path)},  # no wrk on it
        timeout=60,
    )
    assert out.returncode == 1
    assert out.stderr.strip() == "ioreactor bench http: --load wrk, but wrk is not installed"
    assert list(tmp_path.iterdir()) == []
