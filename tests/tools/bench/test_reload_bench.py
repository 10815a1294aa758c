"""``ioreactor bench reload`` in a tiny mode: a real server reloaded under a real load,
every request accounted for, the verdict and the JSON."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.timeout(120)
def test_bench_reload_counts_every_request_across_the_reloads(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "ioreactor", "bench", "reload", "--requests", "900",
         "--rate", "300", "--conns", "6", "--reloads", "2", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=100,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "reload 2/2: done in" in done.stdout
    assert "4 old workers exited 0" in done.stdout
    assert "target (0 failed of >= 900 requests across 2 reloads): meets" in done.stdout
    (path,) = tmp_path.glob("reload-*.json")
    data = json.loads(path.read_text())
    assert data["ok"] and data["failed"] == 0 and data["requests"] >= 900
    assert len(data["reload_seconds"]) == 2
