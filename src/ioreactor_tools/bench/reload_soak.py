"""Zero-downtime reload under load: ``ioreactor serve`` reloaded with SIGHUP again and
again while a steady keep-alive load counts every request.

::

    ioreactor serve --workers W (its own session, log in a file)
    cluster_load (a process of its own): --rate requests/s over --conns keep-alive
        connections, GET / and POST /echo (bodies checked), requests / rate seconds
    SIGHUP at duration * i / (reloads + 1), i = 1..reloads; each reload timed from the
        signal to the supervisor's "reload done"
    verdict: every request ok (no refused connection, no reset, no wrong answer), and
        every reload done; the JSON of the run in --out

Run once for the issue's target (``ioreactor bench reload``: 100,000 requests across 5
reloads); the cluster test runs a bounded version of the same thing through balancers.
"""

from __future__ import annotations

import json
import os
import re
import select
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ioreactor.testing import free_port
from ioreactor_tools.bench.cluster_load import ClusterLoadResult
from ioreactor_tools.bench.pinning import wait_for_port

#: Seconds for the server to listen, the load to start, a reload to finish.
START_TIMEOUT = 30.0
RELOAD_TIMEOUT = 30.0
RELOAD_DONE = "supervisor: reload done"


@dataclass(frozen=True)
class ReloadBenchConfig:
    requests: int = 100_000
    reloads: int = 5
    rate: float = 2_000.0
    conns: int = 32
    workers: int = 2
    dispatch: str | None = None
    drain_delay: float = 0.5

    @property
    def duration(self) -> float:
        """Seconds of load: the schedule's requests, with 2 % to spare (a slot whose
        answer came late sends its next at once, and a few fall past the end)."""
        return self.requests / self.rate * 1.02


@dataclass
class ReloadBenchResult:
    config: ReloadBenchConfig
    requests: int = 0
    failed: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    #: Seconds from each SIGHUP to "reload done".
    reload_seconds: list[float] = field(default_factory=list)
    retired_ok: int = 0
    summary: str = ""

    @property
    def ok(self) -> bool:
        return (
            self.failed == 0
            and self.requests >= self.config.requests
            and len(self.reload_seconds) == self.config.reloads
        )

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["ok"] = self.ok
        return data


def server_command(config: ReloadBenchConfig, port: int) -> list[str]:
    command = [sys.executable, "-m", "ioreactor", "serve", "--listen", f"127.0.0.1:{port}"]
    command += ["--workers", str(config.workers), "--drain-delay", str(config.drain_delay)]
    return command + (["--dispatch", config.dispatch] if config.dispatch else [])


def run_reload_bench(config: ReloadBenchConfig, *, say: Any = print) -> ReloadBenchResult:
    """Serve, load, reload ``config.reloads`` times; every request accounted for."""
    result = ReloadBenchResult(config)
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="ioreactor-reload-") as tmp:
        log_path = Path(tmp) / "serve.log"
        out = Path(tmp) / "load.json"
        with log_path.open("wb") as log:
            server = subprocess.Popen(
                server_command(config, port),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        load: subprocess.Popen[bytes] | None = None
        try:
            wait_for_port("127.0.0.1", port, START_TIMEOUT)
            argv = [sys.executable, "-m", "ioreactor_tools.bench.cluster_load"]
            argv += [f"http://127.0.0.1:{port}", "--rate", str(config.rate)]
            argv += ["--conns", str(config.conns), "--duration", str(config.duration)]
            argv += ["--out", str(out)]
            load = subprocess.Popen(argv, stdout=subprocess.PIPE, start_new_session=True)
            assert load.stdout is not None
            ready, _, _ = select.select([load.stdout], [], [], START_TIMEOUT)
            line = load.stdout.readline().decode() if ready else ""
            if not line.startswith("start "):
                raise RuntimeError(f"the load did not start: {line!r}")
            start = float(line.split()[1])
            say(
                f"load: {config.requests:,} requests at {config.rate:,.0f}/s over "
                f"{config.conns} connections ({config.duration:.0f} s); "
                f"{config.reloads} reloads of {config.workers} workers"
            )
            for i in range(1, config.reloads + 1):
                time.sleep(max(0.0, start + config.duration * i / (config.reloads + 1)
                               - time.monotonic()))  # fmt: skip
                sent = time.monotonic()
                server.send_signal(signal.SIGHUP)
                seconds = _wait_for_count(log_path, RELOAD_DONE, i, RELOAD_TIMEOUT) - sent
                result.reload_seconds.append(seconds)
                say(f"reload {i}/{config.reloads}: done in {seconds * 1000:.0f} ms")
            load.wait(config.duration + START_TIMEOUT)
            loaded = ClusterLoadResult.load(out)
            failed = loaded.failed()
            result.requests = len(loaded.records)
            result.failed = len(failed)
            result.outcomes = loaded.outcomes()
            result.summary = loaded.summary()
        finally:
            if load is not None and load.poll() is None:
                os.killpg(load.pid, signal.SIGKILL)
                load.wait()
            if server.poll() is None:
                server.send_signal(signal.SIGTERM)
                try:
                    server.wait(START_TIMEOUT)
                except subprocess.TimeoutExpired:
                    os.killpg(server.pid, signal.SIGKILL)
                    server.wait()
            text = log_path.read_text(errors="replace")
            result.retired_ok = len(re.findall(r"\(retired: reload\) exited with code 0", text))
    return result


def _wait_for_count(path: Path, text: str, count: int, timeout: float) -> float:
    """The moment ``text`` has appeared ``count`` times in the file at ``path``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.read_text(errors="replace").count(text) >= count:
            return time.monotonic()
        time.sleep(0.005)
    raise TimeoutError(f"{text!r} did not appear {count} times within {timeout} s")


def write_result(result: ReloadBenchResult, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result.to_json(), indent=2))
    return path
