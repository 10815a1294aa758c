"""`ioreactor bench uring`'s engine: ratios to epoll from the same round only, the ratio
table, and a tiny real run (each backend's server in ``--serve`` mode, the CPU split
into user and system time adding up to the window's CPU, the idle-memory table)."""

from __future__ import annotations

import shlex
from pathlib import Path

from rich.console import Console

from ioreactor.loop.backends import new_loop
from ioreactor.loop.uring import UringUnavailable
from ioreactor_tools.bench.procstat import CLOCK_TICKS
from ioreactor_tools.bench.report import BenchResult, read_json
from ioreactor_tools.bench.uring_bench import ratio_table, ratios
from support.bench import workload_row
from support.cli_process import run_cli


def _row(backend: str, cpu_seconds: float, round_no: int) -> BenchResult:
    """``backend``'s row of ``round_no``: a quarter of its CPU user time, the rest system."""
    row = workload_row(backend, "echo", cpu_seconds, round_no=round_no)
    row.extra.update(user_us_per_op=cpu_seconds / 4, system_us_per_op=cpu_seconds * 3 / 4)
    return row


def test_ratios_divide_by_epoll_of_the_same_round_only() -> None:
    rows = [
        _row("epoll", 10.0, 0),
        _row("uring", 8.0, 0),
        _row("epoll", 5.0, 1),
        _row("uring", 6.0, 1),
        _row("epoll", 4.0, 2),  # uring did not run in round 3: no ratio from it
    ]
    assert ratios(rows, "uring", 100) == [0.8, 1.2]
    assert ratios(rows, "uring", 1000) == []
    console = Console(record=True, width=160)
    console.print(ratio_table(rows, ["epoll", "uring"]))
    text = console.export_text()
    assert "server CPU µs per msg / epoll's in the same round" in text
    cells = {
        row[0]: row[1:]
        for line in text.splitlines()
        if (row := [cell.strip() for cell in line.split("│")[1:-1]])
    }
    # per round (a dash where a backend did not run), the median, the mean user and
    # system µs over the rounds
    assert cells["epoll"] == ["100", "1.00", "1.00", "1.00", "1.00", "1.58", "4.75"]
    assert cells["uring"] == ["100", "0.80", "1.20", "—", "1.00", "1.75", "5.25"]


def _uring_poll_available() -> bool:
    try:
        new_loop("uring-poll").close()
    except (UringUnavailable, OSError):
        return False
    return True


def test_tiny_run_splits_each_backends_cpu_and_measures_idle_memory(tmp_path: Path) -> None:
    backends = "epoll,uring-poll" if _uring_poll_available() else "epoll"
    command = (
        "ioreactor bench uring --conns 4 --duration 0.4 --warmup 0.1 --size 64 "
        f"--backends {backends} --idle 5"
    )
    proc = run_cli(*shlex.split(command)[1:], "--out", str(tmp_path), timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "server CPU µs per msg / epoll's in the same round" in proc.stdout
    assert "memory per idle connection (5 connections)" in proc.stdout
    # the line that reruns it is the command that ran
    assert f"target: uring <= 0.85 x epoll; command: {command}\n" in proc.stdout
    (saved,) = tmp_path.glob("uring-*.json")
    doc, results = read_json(saved)
    assert [r.name for r in results] == backends.split(",")
    assert [m["backend"] for m in doc["meta"]["idle"]] == backends.split(",")
    for r in results:
        assert r.ops > 0 and r.error_count == 0
        user, system = r.extra["user_us_per_op"], r.extra["system_us_per_op"]
        assert user >= 0 and system >= 0
        # the split is read from the server process right after the window's own
        # samples: the two may differ by a clock tick at each end
        two_ticks_per_op = 2 / CLOCK_TICKS * 1e6 / r.ops
        assert abs(user + system - r.cpu_us_per_op) <= two_ticks_per_op
