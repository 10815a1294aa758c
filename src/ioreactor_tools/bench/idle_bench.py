"""``ioreactor bench idle``: what one idle connection costs the ioreactor echo server.

Method: start ``ioreactor echo`` (under :mod:`ioreactor_tools.bench.heap_probe`, so tracemalloc
runs inside it), read the server's RSS (``/proc/PID/statm``) and traced Python heap, open
N connections that send nothing, wait until the server holds N more fds, read both again,
and divide the deltas by the connections accepted. The heap figure is what the issue's
target speaks of (Python objects per connection); RSS adds malloc and page granularity
(kernel socket buffers are in neither).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ioreactor.net.sockopt import raise_nofile_limit
from ioreactor.testing import free_port
from ioreactor_tools.bench.echo_bench import echo_server_args
from ioreactor_tools.bench.pinning import ServerProcess, core_plan
from ioreactor_tools.bench.procstat import process_fds, sample_tree

#: Seconds to wait for the server to accept every connection (and for a heap report).
SETTLE_TIMEOUT = 60.0
#: Connections opened between two checks of the server's fd count.
CONNECT_BATCH = 500
#: Issue 15's target: Python heap per idle connection, bytes (at most).
HEAP_TARGET = 500


@dataclass(frozen=True)
class IdleReading:
    """One server, before and after ``connected`` idle connections."""

    connected: int
    before: int
    after: int

    @property
    def per_conn(self) -> float:
        return (self.after - self.before) / self.connected if self.connected else 0.0


@dataclass(frozen=True)
class IdleResult:
    conns: int
    rss: IdleReading
    heap: IdleReading | None
    method: str


def _wait(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} within {timeout} s")
        time.sleep(0.02)


def _rss(pid: int) -> int:
    return sample_tree(pid, count_fds=False).rss_bytes


def _read_heap(pid: int, report: Path) -> int:
    report.unlink(missing_ok=True)
    os.kill(pid, signal.SIGUSR1)
    _wait(report.exists, SETTLE_TIMEOUT, "no heap report from the server")
    current: int = json.loads(report.read_text())["current"]
    return current


def _open_idle(echo: list[str], conns: int, poller: str | None, report: Path | None) -> IdleReading:
    """Start an echo server, open ``conns`` idle connections; RSS, or heap with ``report``."""
    port = free_port()
    command = [*echo, *echo_server_args(port, poller)]
    plan = core_plan()
    socks: list[socket.socket] = []
    try:
        with ServerProcess(command, port=port, core=plan.server) as server:
            pid = server.pid
            time.sleep(0.2)  # wait_for_port's probe connection must be gone first
            base_fds = process_fds(pid)
            before = _read_heap(pid, report) if report else _rss(pid)
            failed = 0
            while len(socks) + failed < conns:
                for _ in range(min(CONNECT_BATCH, conns - len(socks) - failed)):
                    try:
                        socks.append(socket.create_connection(("127.0.0.1", port), timeout=10))
                    except OSError:
                        failed += 1
                want = base_fds + len(socks)

                def accepted(want: int = want) -> bool:
                    return process_fds(pid) >= want

                _wait(accepted, SETTLE_TIMEOUT, "the server did not accept the connections")
            after = _read_heap(pid, report) if report else _rss(pid)
    finally:
        for s in socks:
            s.close()
    return IdleReading(len(socks), before, after)


def run_idle_bench(conns: int, *, poller: str | None = None, heap: bool = True) -> IdleResult:
    """Open ``conns`` idle connections to fresh ioreactor echo servers; see the module doc.

    RSS is read from a plain server (tracemalloc's own bookkeeping would inflate it), the
    heap from a second server run under :mod:`ioreactor_tools.bench.heap_probe`.
    """
    raise_nofile_limit()
    rss = _open_idle([sys.executable, "-m", "ioreactor"], conns, poller, None)
    method = "RSS: /proc/PID/statm of a plain `ioreactor echo` server, after - before"
    traced = None
    if heap:
        with tempfile.TemporaryDirectory(prefix="ioreactor-idle-") as workdir:
            report = Path(workdir) / "heap.json"
            probe = [sys.executable, "-m", "ioreactor_tools.bench.heap_probe", str(report)]
            traced = _open_idle(probe, conns, poller, report)
        method += (
            "; heap: tracemalloc.get_traced_memory() current (after gc.collect) inside a "
            "second server run under ioreactor_tools.bench.heap_probe, after - before"
        )
    method += "; each divided by the connections that server accepted"
    return IdleResult(conns, rss, traced, method)
