"""``ioreactor bench echo``: the echo server against the asyncio and uvloop peers.

For each connection count, each server in turn runs pinned to the server core while the
echo load (:mod:`ioreactor_tools.bench.echo_load`) runs on the load core; the server's process
tree CPU time is read from ``/proc`` right before and right after the measured window
(after a warm-up on the same connections), so ``CPU µs/msg`` is server CPU over exactly
the messages counted. All servers run in one invocation, so their ratios compare like
with like on a shared, noisy machine.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ioreactor.testing import free_port
from ioreactor_tools.bench.echo_load import EchoLoadConfig, run_echo_load
from ioreactor_tools.bench.pinning import WARMUP as WARMUP  # the CLI takes it from here
from ioreactor_tools.bench.pinning import (
    CorePlan,
    ServerProcess,
    ServerWindow,
    core_plan,
    pin_current_process,
)
from ioreactor_tools.bench.report import BenchResult, load_window_result, ratio_target_lines
from ioreactor_tools.bench.rounds import run_server_rounds
from ioreactor_tools.bench.tcp_load import load_processes

if TYPE_CHECKING:
    from rich.console import Console

#: The issue's targets: ioreactor's CPU per message over each peer's, at most.
TARGETS = {"asyncio": 0.9, "uvloop": 1.0}


def echo_server_args(port: int, poller: str | None = None, workers: int = 0) -> list[str]:
    """``ioreactor`` arguments for the echo server: one process with one loop by default
    (like for like with the peers), or ``workers`` processes."""
    args = ["echo", "--listen", f"127.0.0.1:{port}", "--workers", str(workers)]
    return [*args, "--poller", poller] if poller else args


def ioreactor_echo_command(port: int, poller: str | None = None, conns: int = 0) -> list[str]:
    """One process, unless ``conns`` needs more fds than one process may hold here:
    then as many worker processes as that takes (``--conns 20000`` on a 20,000-fd limit)."""
    needed = load_processes(conns) if conns else 1
    workers = 0 if needed == 1 else max(needed, os.cpu_count() or 1)
    return [sys.executable, "-m", "ioreactor", *echo_server_args(port, poller, workers)]


def _peer(name: str) -> Callable[[int, str | None, int], list[str]]:
    def command(port: int, poller: str | None, conns: int) -> list[str]:  # one loop kind
        from ioreactor_tools.bench.peers import echo_peer_command  # asyncio: load only here

        return echo_peer_command(name, port)

    return command


#: Server name -> command for (port, poller, conns).
ECHO_SERVERS: dict[str, Callable[[int, str | None, int], list[str]]] = {
    "ioreactor": ioreactor_echo_command,
    "asyncio": _peer("asyncio-echo"),
    "uvloop": _peer("uvloop-echo"),
}


@dataclass(frozen=True)
class EchoBenchConfig:
    conns: tuple[int, ...] = (100, 1000)
    size: int = 1024
    duration: float = 10.0
    warmup: float = WARMUP
    pipeline: int = 1
    poller: str | None = None
    servers: tuple[str, ...] = tuple(ECHO_SERVERS)
    #: Repeat the whole comparison (servers interleaved); verdicts use the median.
    rounds: int = 1


def server_unavailable(name: str) -> str | None:
    """None if server ``name`` can run here, else what it needs."""
    from ioreactor_tools.bench.peers import uvloop_available

    return uvloop_available() if name == "uvloop" else None


def measure_echo_server(
    name: str,
    command: Sequence[str],
    port: int,
    conns: int,
    config: EchoBenchConfig,
    plan: CorePlan,
    *,
    progress: bool = False,
) -> BenchResult:
    """Start ``command`` pinned, drive the echo load, and charge its CPU per message."""
    with ServerProcess(command, port=port, core=plan.server) as server:
        window = ServerWindow(server)
        load = run_echo_load(
            EchoLoadConfig(
                host="127.0.0.1",
                port=port,
                conns=conns,
                size=config.size,
                duration=config.duration,
                pipeline=config.pipeline,
                procs=load_processes(conns),
                warmup=config.warmup,
                poller=config.poller,
            ),
            on_start=window.open,
            on_end=window.close,
            progress=progress,
        )
    return load_window_result(
        name,
        conns,
        load,
        window,
        extra={
            "size": config.size,
            "pipeline": config.pipeline,
            "connected": load.connected,
            "server_fds": window.after.fds,
            "server_processes": len(window.after.pids),
            "load_processes": load.procs,
            "command": " ".join(command),
        },
    )


def run_echo_bench(
    config: EchoBenchConfig, *, console: Console | None = None, progress: bool = False
) -> list[BenchResult]:
    """Every server at every connection count, in one run; the load pins this process."""
    from rich.console import Console

    plan = core_plan()
    console = console or Console()
    pin_current_process(plan.load)

    def measure(name: str, conns: int) -> BenchResult:
        port = free_port()
        command = ECHO_SERVERS[name](port, config.poller, conns)
        return measure_echo_server(name, command, port, conns, config, plan, progress=progress)

    return run_server_rounds(
        config, unavailable=server_unavailable, measure=measure, console=console
    )


def target_lines(results: Sequence[BenchResult]) -> list[str]:
    """One line per connection count and peer: ioreactor's ratio against its target --
    with several rounds, the median of the per-round ratios (each in brackets)."""
    return ratio_target_lines(results, TARGETS)
