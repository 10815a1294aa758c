"""Benchmark rows made by hand, for the tests of the verdicts and tables (no run needed).

::

    workload_row("ioreactor", "hello", cpu_seconds=10.0) -> BenchResult (1M ops in 1 s)
"""

from __future__ import annotations

from ioreactor_tools.bench.report import BenchResult


def workload_row(
    name: str,
    workload: str,
    cpu_seconds: float,
    *,
    round_no: int = 0,
    conns: int = 100,
    ops: int = 1_000_000,
    unit: str = "msg",
) -> BenchResult:
    """``name``'s run of ``workload`` in round ``round_no``: ``ops`` in one second for
    ``cpu_seconds`` of server CPU (latencies 1, 2 and 3 µs, no RSS)."""
    row = BenchResult(name, conns, ops, 1.0, cpu_seconds, 1.0, 2.0, 3.0, 0, unit=unit)
    row.extra.update(workload=workload, round=round_no)
    return row


#: What two differences of float sums of clock ticks may disagree by: a run's user CPU
#: (end.user - start.user) may come out a hair above its CPU (end.cpu - start.cpu).
CLOCK_ROUNDING = 1e-9
