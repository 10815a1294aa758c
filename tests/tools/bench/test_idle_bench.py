"""`ioreactor bench idle` on a few hundred connections: both readings are real."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

CONNS = 300
IDLE_COMMAND = [sys.executable, "-m", "ioreactor", "bench", "idle"]


def test_idle_bench_reads_rss_and_heap_inside_the_server(tmp_path: Path):
    proc = subprocess.run(
        [*IDLE_COMMAND, "--conns", str(CONNS), "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Python heap per idle connection" in proc.stdout
    assert "method: RSS: /proc/PID/statm" in proc.stdout
    [path] = tmp_path.glob("idle-*.json")
    doc = json.loads(path.read_text())
    result = doc["result"]
    assert result["rss"]["connected"] == result["heap"]["connected"] == CONNS
    # Every accepted connection holds Python objects (socket, TcpConnection, Buffer):
    # a probe that did not read the server's own heap would see no growth.
    assert doc["heap_per_conn"] > 100
    assert result["rss"]["after"] > 0
