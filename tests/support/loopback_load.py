"""The cluster test's load generator against a server on loopback: every request
accounted for (``ioreactor_tools.bench.cluster_load`` in a process of its own)."""

from __future__ import annotations

import select
import subprocess
import sys
import time
from pathlib import Path

from ioreactor_tools.bench.cluster_load import ClusterLoadResult
from support.processes import Process, spawn

LOAD_START_TIMEOUT = 20.0


class Load:
    """Keep-alive GETs (``get_path``) and POST /echo at ``rate`` per second in all."""

    def __init__(
        self,
        tmp_path: Path,
        port: int,
        *,
        duration: float,
        rate: float = 400.0,
        conns: int = 8,
        get_path: str = "/",
        name: str = "load",
    ) -> None:
        self.out = tmp_path / f"{name}.json"
        argv = [sys.executable, "-m", "ioreactor_tools.bench.cluster_load"]
        argv += [f"http://127.0.0.1:{port}", "--rate", str(rate), "--conns", str(conns)]
        argv += ["--duration", str(duration), "--get-path", get_path, "--out", str(self.out)]
        self.duration = duration
        self.process: Process = spawn(argv, tmp_path / f"{name}.log", stdout=subprocess.PIPE)
        stdout = self.process.popen.stdout
        assert stdout is not None
        ready, _, _ = select.select([stdout], [], [], LOAD_START_TIMEOUT)
        line = stdout.readline().decode() if ready else ""
        if not line.startswith("start "):
            self.process.stop()
            raise AssertionError(f"the load did not start ({line!r}):\n{self.process.output()}")
        #: CLOCK_MONOTONIC second the first request was due.
        self.start = float(line.split()[1])

    def sleep_until(self, offset: float) -> None:
        time.sleep(max(0.0, self.start + offset - time.monotonic()))

    def result(self, slack: float = 20.0) -> ClusterLoadResult:
        status = self.process.wait(self.duration + slack)
        if status != 0 or not self.out.exists():
            raise AssertionError(f"the load failed ({status}):\n{self.process.output()}")
        return ClusterLoadResult.load(self.out)

    def stop(self) -> None:
        self.process.stop()
