"""c10k in reduced form: the thread pool starves beyond its size, select fails past
FD_SETSIZE, epoll serves both levels; a failed model skips its higher levels; the CLI
writes its table, plot and report."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from ioreactor.cli import main
from ioreactor_tools.lab import c10k, c10k_report
from ioreactor_tools.lab.c10k import C10kConfig, Step, predicted_memory
from support.cli_process import run_cli


def test_c10k_reduced_run() -> None:
    affinity = os.sched_getaffinity(0)
    config = C10kConfig(
        models=("thread-pool", "reactor-select", "reactor-epoll"),
        levels=(20, 1100),
        duration=0.5,
        warmup=0.2,
        pool_workers=8,
        drain_timeout=2.5,
    )
    steps = {(s.model, s.conns): s for s in c10k.run(config)}
    assert os.sched_getaffinity(0) == affinity, "the load's pinning is undone"

    pool = steps["thread-pool", 20]
    assert pool.status == "failed" and pool.errors.get("unanswered"), "20 conns, 8 workers"
    assert ("thread-pool", 1100) not in steps, "a failed model skips its higher levels"

    assert steps["reactor-select", 20].ok
    select_big = steps["reactor-select", 1100]
    assert select_big.status == "failed" and "FD_SETSIZE" in select_big.reason

    for conns in (20, 1100):
        epoll = steps["reactor-epoll", conns]
        assert epoll.ok, epoll.reason
        assert epoll.connected == conns and epoll.messages > 0 and not epoll.errors
        assert epoll.cpu_us_per_msg is not None and epoll.memory_bytes > 0
        assert (epoll.processes, epoll.threads) == (1, 1)

    report = c10k_report.findings(list(steps.values()), config)
    verdicts = {f.step: f.matches for f in report.findings}
    assert verdicts["thread pool of 8 workers, long-lived connections"] is True
    assert verdicts["one reactor on select"] is True
    assert verdicts["reactor-epoll"] is True


def test_memory_guard_extrapolates_per_connection() -> None:
    history = [
        Step("m", 100, "ok", memory_bytes=100 * 2**20),
        Step("m", 1000, "ok", memory_bytes=1000 * 2**20),
    ]
    assert predicted_memory(history, 5000) == 5000 * 2**20
    assert predicted_memory([], 5000) is None
    assert predicted_memory([Step("m", 100, "failed")], 5000) is None


def test_c10k_command_writes_table_plot_and_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    code = main(
        [
            "lab",
            "c10k",
            "--models",
            "reactor-epoll",
            "--levels",
            "20",
            "--duration",
            "0.5",
            "--out",
            str(out),
        ]
    )
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "reactor-epoll" in printed and "every step" in printed
    assert (out / "c10k.png").stat().st_size > 10_000
    assert "![C10K plot](c10k.png)" in (out / "report.md").read_text()
    doc = json.loads((out / "results.json").read_text())
    assert doc["steps"][0]["status"] == "ok" and doc["machine"]["kernel"].startswith("Linux")


def test_failure_reason_prefers_the_limit_the_server_hit(tmp_path: Path) -> None:
    log = tmp_path / "stderr"
    log.write_text(
        "12:00 WARNING loop blocked for 150 ms\n"
        "12:01 WARNING accept: Too many open files; closing new connections\n"
        "12:02 WARNING loop blocked for 120 ms\n"
    )
    assert "Too many open files" in c10k.last_error_line(str(log))
    log.write_text("12:02 WARNING loop blocked for 120 ms\n")
    assert "loop blocked" in c10k.last_error_line(str(log))
    assert c10k.last_error_line(str(tmp_path / "missing")) == ""


def test_c10k_tables_stay_readable_in_a_pipe(tmp_path: Path) -> None:
    # Output to a file or a pipe: rich would assume 80 columns and cut the model names.
    done = run_cli(
        "lab", "c10k", "--models", "thread-per-connection", "--levels", "20",
        "--duration", "0.3", "--out", str(tmp_path / "run"), timeout=120, env={"COLUMNS": ""},
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    table = done.stdout[done.stdout.index("every step") :]
    assert "thread-per-connection" in table and "…" not in table, table
