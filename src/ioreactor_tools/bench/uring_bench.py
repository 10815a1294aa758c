"""``ioreactor bench uring``: epoll, io_uring readiness and io_uring completion side by
side -- the servers, the measurement and the ratio tables.

::

    UringBenchConfig -> run_uring_bench: per workload, round, connection count, backend
        start_server (this command in --serve mode, pinned) <-- echo or HTTP load
        -> measure_backend: CPU per op over the window, split user/system
        -> BenchResult; each round's table, then ratio_table (each / epoll's, same round)
    measure_idle(backend, n): RSS and Python heap per idle connection

The same server -- TCP echo (``EchoHandler`` on a ``TcpServer``) or the ``ioreactor
serve`` app answering keep-alive ``GET /`` -- runs on each backend in turn, pinned to the
server core while the project's load generator runs on the load core; server CPU per
operation is read from ``/proc`` around the measured window exactly as ``bench
echo``/``http`` do, split into user (Python) and system (kernel) time, and each backend
is divided by epoll's figure *from the same round*. Memory per idle connection is the
server's RSS and Python heap after - before N idle connections, divided by N.

Backends: ``epoll`` (the default loop), ``uring-poll`` (:class:`UringPoller`: readiness
through one-shot ``POLL_ADD`` requests, Python still calls recv/send) and ``uring``
(``EventLoop("uring")``, completion mode: the kernel accepts, receives into provided
buffers, sends and closes; Python handles completions).

The servers are the ``bench uring`` command itself in ``--serve`` mode (:func:`serve`),
so they need no other CLI::

    python -m ioreactor bench uring --serve echo --backend uring --listen H:P
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ioreactor.net.address import Address
from ioreactor.testing import free_port
from ioreactor_tools.bench.echo_load import EchoLoadConfig, run_echo_load
from ioreactor_tools.bench.pinning import (
    WARMUP,
    CorePlan,
    ServerProcess,
    ServerWindow,
    pin_current_process,
)
from ioreactor_tools.bench.procstat import process_cpu_times, process_fds, sample_tree
from ioreactor_tools.bench.report import (
    BenchResult,
    load_window_result,
    print_table,
    ratio,
)
from ioreactor_tools.bench.tcp_load import TcpLoadResult, load_processes

if TYPE_CHECKING:  # rich is imported where a table is drawn
    from rich.console import Console
    from rich.table import Table

#: What the servers serve: TCP echo, or HTTP keep-alive ``GET /``.
WORKLOADS = ("echo", "http")
#: Backends compared, the baseline first.
BACKENDS = ("epoll", "uring-poll", "uring")
BASELINE = "epoll"
#: The issue's target: completion-mode CPU per message over epoll's, at most.
TARGET = 0.85
#: Tries to start a server on a free port (another process may take it first).
START_ATTEMPTS = 3
#: Seconds to wait for a server to accept the idle connections / write a heap report.
SETTLE_TIMEOUT = 60.0


@dataclasses.dataclass(frozen=True)
class UringBenchConfig:
    """What ``bench uring`` compares: each workload on each backend at each connection
    count, ``rounds`` times; ``idle`` > 0 adds memory per that many idle connections."""

    conns: tuple[int, ...] = (100, 1000)
    size: int = 1024
    duration: float = 3.0
    warmup: float = WARMUP
    rounds: int = 1
    backends: tuple[str, ...] = BACKENDS
    workloads: tuple[str, ...] = ("echo",)
    idle: int = 0


# -- the server side (``bench uring --serve``) -------------------------------------------------


def serve(workload: str, backend: str, listen: Address) -> int:
    """Serve ``workload`` on ``backend`` until SIGTERM/SIGINT (a benchmark's server):
    ``echo`` is ``EchoHandler`` on a ``TcpServer``, ``http`` the ``ioreactor serve`` app
    (``GET /`` -> ``Hello, World!``) on an ``HttpServer``, one loop, one process."""
    from ioreactor.loop.backends import new_loop
    from ioreactor.net.sockopt import raise_nofile_limit

    raise_nofile_limit()
    loop = new_loop(backend, name=f"{workload}-{backend}")
    close: Callable[[], object]
    if workload == "http":
        from ioreactor.http.echo_app import build_echo_app
        from ioreactor.http.server import HttpServer

        close = HttpServer(loop, listen, build_echo_app()).start().tcp.close
    else:
        from ioreactor.echo import EchoHandler
        from ioreactor.net.server import TcpServer

        close = TcpServer(loop, listen, EchoHandler()).start().close
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, loop.stop)
    loop.run()
    close()
    loop.run_once(0)  # let the closes reach the kernel
    loop.close()
    return 0


def server_command(
    backend: str, port: int, prefix: Sequence[str] = (), workload: str = "echo"
) -> list[str]:
    """The command serving ``workload`` on ``backend`` at ``127.0.0.1:port``."""
    launcher = list(prefix) or [sys.executable, "-m", "ioreactor"]
    args = ["bench", "uring", "--serve", workload, "--backend", backend]
    return [*launcher, *args, "--listen", f"127.0.0.1:{port}"]


# -- idle memory ---------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class IdleMemory:
    backend: str
    conns: int
    rss_per_conn: float
    heap_per_conn: float


def _wait(predicate: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + SETTLE_TIMEOUT
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} within {SETTLE_TIMEOUT} s")
        time.sleep(0.02)


def _heap(pid: int, report: Path) -> int:
    report.unlink(missing_ok=True)
    os.kill(pid, signal.SIGUSR1)
    _wait(report.exists, "no heap report from the server")
    current: int = json.loads(report.read_text())["current"]
    return current


def _idle_delta(backend: str, conns: int, report: Path | None) -> tuple[float, int]:
    """Per-connection growth of RSS (``report`` None) or traced heap, and how many
    connections the server accepted."""
    prefix = (
        [sys.executable, "-m", "ioreactor_tools.bench.heap_probe", str(report)] if report else []
    )
    socks: list[socket.socket] = []
    server = start_server(backend, "echo", None, prefix)
    port = server.port
    try:
        pid = server.pid
        time.sleep(0.2)  # the readiness probe's connection must be gone first
        base_fds = process_fds(pid)

        def measure() -> int:
            return _heap(pid, report) if report else sample_tree(pid, count_fds=False).rss_bytes

        before = measure()
        try:
            for _ in range(conns):
                socks.append(socket.create_connection(("127.0.0.1", port), timeout=10))
            _wait(lambda: process_fds(pid) >= base_fds + len(socks), "idle connections")
            after = measure()
        finally:
            for s in socks:
                s.close()
    finally:
        server.stop()
    return (after - before) / len(socks), len(socks)


def measure_idle(backend: str, conns: int) -> IdleMemory:
    """RSS per idle connection from a plain server, heap from one under heap_probe."""
    rss, _ = _idle_delta(backend, conns, None)
    with tempfile.TemporaryDirectory(prefix="ioreactor-uring-idle-") as workdir:
        heap, _ = _idle_delta(backend, conns, Path(workdir) / "heap.json")
    return IdleMemory(backend, conns, rss, heap)


def idle_table(idle: Sequence[IdleMemory]) -> Table:
    """One row per backend: RSS and Python heap bytes per idle connection."""
    from rich.table import Table

    conns = idle[0].conns if idle else 0
    table = Table(title=f"memory per idle connection ({conns:,} connections)")
    for column in ("backend", "RSS B/conn", "Python heap B/conn"):
        table.add_column(column, justify="left" if column == "backend" else "right")
    for m in idle:
        table.add_row(m.backend, f"{m.rss_per_conn:,.0f}", f"{m.heap_per_conn:,.0f}")
    return table


# -- the comparison ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Run:
    """What :func:`measure_backend` needs besides the backend and the connection count."""

    workload: str
    size: int
    duration: float
    warmup: float
    plan: CorePlan


def _drive(
    run: Run, port: int, conns: int, on_start: Callable[[], None], on_end: Callable[[], None]
) -> TcpLoadResult:
    """Run the workload's load and return what it saw."""
    if run.workload == "http":
        from ioreactor_tools.bench.http_load import HttpLoadConfig, run_http_load

        return run_http_load(
            HttpLoadConfig(
                host="127.0.0.1",
                port=port,
                conns=conns,
                duration=run.duration,
                warmup=run.warmup,
                procs=load_processes(conns),
            ),
            on_start=on_start,
            on_end=on_end,
        )
    return run_echo_load(
        EchoLoadConfig(
            host="127.0.0.1",
            port=port,
            conns=conns,
            size=run.size,
            duration=run.duration,
            procs=load_processes(conns),
            warmup=run.warmup,
        ),
        on_start=on_start,
        on_end=on_end,
    )


def start_server(
    backend: str, workload: str, core: int | None, prefix: Sequence[str] = ()
) -> ServerProcess:
    """A started server on a free port. The machine is shared: another process may take
    the port between the probe and the bind, so a server that dies before listening is
    retried on a new port (up to ``START_ATTEMPTS`` times)."""
    for attempt in range(START_ATTEMPTS):
        port = free_port()
        command = server_command(backend, port, prefix, workload)
        try:
            return ServerProcess(command, port=port, core=core).start()
        except RuntimeError:
            if attempt == START_ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")


def measure_backend(backend: str, conns: int, run: Run) -> BenchResult:
    """One backend's server, pinned, under the workload's load; CPU split user/system.

    As ``ioreactor bench echo``/``http`` measure it (CPU of the server's process tree read
    right before and after the window), plus the user/system split of the server process:
    user time is the Python side of each operation, system time the kernel's.
    """
    split: dict[str, tuple[float, float]] = {}
    server = start_server(backend, run.workload, run.plan.server)
    window = ServerWindow(server)
    port = server.port
    command = server.command

    def open_window() -> None:
        window.open()
        split["before"] = process_cpu_times(server.pid)

    def close_window() -> None:
        window.close()
        split["after"] = process_cpu_times(server.pid)

    try:
        load = _drive(run, port, conns, open_window, close_window)
    finally:
        server.stop()
    per_op = 1e6 / load.count if load.count else float("nan")
    return load_window_result(
        backend,
        conns,
        load,
        window,
        extra={
            "workload": run.workload,
            "size": run.size,
            "user_us_per_op": (split["after"][0] - split["before"][0]) * per_op,
            "system_us_per_op": (split["after"][1] - split["before"][1]) * per_op,
            "server_fds": window.after.fds,
            "command": " ".join(command),
        },
    )


def ratios(results: Sequence[BenchResult], backend: str, conns: int) -> list[float]:
    """``backend``'s CPU µs/msg over epoll's, one value per round (same round only)."""
    values = []
    for i in sorted({r.extra["round"] for r in results}):
        same = [r for r in results if r.extra["round"] == i]
        mine = [r for r in same if r.name == backend and r.conns == conns]
        value = ratio(mine[0], same, BASELINE) if mine else None
        if value is not None:
            values.append(value)
    return values


def ratio_table(results: Sequence[BenchResult], backends: Sequence[str]) -> Table:
    """Per backend and connection count: the ratio to epoll in each round, their median,
    and the CPU split (user = Python, system = kernel) averaged over the rounds."""
    from rich.table import Table

    rounds = len({r.extra["round"] for r in results})
    unit = results[0].unit if results else "msg"
    table = Table(title=f"server CPU µs per {unit} / epoll's in the same round")
    table.add_column("backend")
    table.add_column("conns", justify="right")
    for i in range(rounds):
        table.add_column(f"round {i + 1}", justify="right")
    table.add_column("median", justify="right")
    table.add_column(f"user µs/{unit}", justify="right")
    table.add_column(f"system µs/{unit}", justify="right")
    for conns in sorted({r.conns for r in results}):
        for backend in backends:
            values = ratios(results, backend, conns)
            mine = [r for r in results if r.name == backend and r.conns == conns]
            user = statistics.fmean(r.extra["user_us_per_op"] for r in mine)
            system = statistics.fmean(r.extra["system_us_per_op"] for r in mine)
            cells = [f"{v:.2f}" for v in values] + ["—"] * (rounds - len(values))
            median = f"{statistics.median(values):.2f}" if values else "—"
            table.add_row(backend, f"{conns:,}", *cells, median, f"{user:.2f}", f"{system:.2f}")
    return table


def run_uring_bench(
    config: UringBenchConfig, plan: CorePlan, *, console: Console
) -> list[BenchResult]:
    """Every workload, round, connection count and backend, the load pinning this process
    to ``plan.load``; prints each round's table and, per workload, :func:`ratio_table`."""
    pin_current_process(plan.load)
    results: list[BenchResult] = []
    for workload in config.workloads:
        run = Run(workload, config.size, config.duration, config.warmup, plan)
        mine: list[BenchResult] = []
        for round_ in range(config.rounds):
            for conns in config.conns:
                for backend in config.backends:
                    console.print(
                        f"[dim]{workload} round {round_ + 1}: {backend}, {conns:,} conns ...[/]"
                    )
                    result = measure_backend(backend, conns, run)
                    result.extra["round"] = round_
                    mine.append(result)
            this_round = [r for r in mine if r.extra["round"] == round_]
            what = "HTTP keep-alive GET /" if workload == "http" else f"TCP echo {config.size} B"
            title = (
                f"{what}, round {round_ + 1}, {config.duration:g} s per backend "
                f"(server on core {plan.server}, load on core {plan.load})"
            )
            print_table(this_round, [BASELINE], title=title, console=console)
        console.print(ratio_table(mine, config.backends))
        results += mine
    return results
