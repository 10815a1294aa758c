"""`ioreactor bench asgi` in a tiny mode: each workload on each server, tables, JSON,
charts; the verdicts against the issue's targets; the WebSocket load's frames."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from ioreactor_tools.bench.asgi_bench import target_lines
from ioreactor_tools.bench.asgi_servers import SERVERS, WORKLOADS
from ioreactor_tools.bench.report import read_json
from ioreactor_tools.bench.ws_load import _frame, reply_size
from support.bench import CLOCK_ROUNDING, workload_row
from support.websocket_peer import FrameReader


def test_each_workload_is_judged_against_its_own_targets() -> None:
    rows = [
        workload_row("ioreactor", "hello", 10.0),
        workload_row("uvicorn", "hello", 20.0),
        workload_row("granian", "hello", 9.0),
        workload_row("ioreactor", "websocket-echo", 13.0),
        workload_row("uvicorn", "websocket-echo", 20.0),
    ]
    assert target_lines(rows) == [
        "hello, 100 conns: ioreactor / uvicorn = 0.50 (meets the target <= 0.60)",
        "hello, 100 conns: ioreactor / granian = 1.11 (MISSES the target <= 1.00)",
        "websocket-echo, 100 conns: ioreactor / uvicorn = 0.65 (MISSES the target <= 0.60)",
    ]


def test_the_load_sends_masked_frames_and_expects_the_echo_size() -> None:
    for size in (5, 1024, 70_000):
        payload = os.urandom(size)
        (frame,) = FrameReader().feed(_frame(payload))  # an independent frame parser
        assert frame.payload == payload and frame.opcode == 0x2 and frame.fin
    assert [reply_size(n) for n in (5, 1024, 70_000)] == [7, 1028, 70_010]


def test_tiny_bench_runs_every_workload_on_every_server(tmp_path: Path) -> None:
    # 16 connections: each stays under the servers' per-connection request caps in the
    # window (ioreactor's 10,000, hypercorn's 1,000), which the load counts as closes
    proc = subprocess.run(
        [sys.executable, "-m", "ioreactor", "bench", "asgi", "--conns", "16", "--duration",
         "0.3", "--warmup", "0.1", "--load", "ioreactor", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    [json_path] = tmp_path.glob("asgi-*.json")
    _, results = read_json(json_path)
    assert [(r.extra["workload"], r.name) for r in results] == [
        (w, s) for w in WORKLOADS for s in SERVERS
    ]
    for r in results:
        assert r.ops > 0 and r.errors == {}, r
        assert 0 <= (r.server_user_seconds or 0) <= r.server_cpu_seconds + CLOCK_ROUNDING
    for workload in WORKLOADS:
        assert f"{workload}: ioreactor vs uvicorn" in proc.stdout
        assert json_path.with_name(f"{json_path.stem}-{workload}.png").exists()
    assert "hello, 16 conns: ioreactor / uvicorn =" in proc.stdout
