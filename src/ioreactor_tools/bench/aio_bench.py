"""``ioreactor bench aio``: asyncio programs on ioreactor.aio vs stdlib asyncio vs uvloop.

For each workload (:mod:`ioreactor_tools.bench.aio_servers`) and connection count, the
same program runs on each loop in turn, pinned to the server core, while the load runs
on the other core: the echo ping-pong of ``bench echo`` for the echo workloads, the
HTTP keep-alive load of ``bench http`` (ioreactor's own generator) for aiohttp. The
server's process-tree CPU time is read from ``/proc`` around the measured window, so
``CPU µs/msg`` is server CPU over exactly the messages counted, and every ratio compares
loops measured in the same run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ioreactor.testing import free_port
from ioreactor_tools.bench.aio_servers import LOOPS, WORKLOADS, server_command, unavailable
from ioreactor_tools.bench.echo_bench import EchoBenchConfig, measure_echo_server
from ioreactor_tools.bench.http_bench import measure_http_server
from ioreactor_tools.bench.pinning import WARMUP as WARMUP  # the CLI takes it from here
from ioreactor_tools.bench.pinning import CorePlan, core_plan, pin_current_process
from ioreactor_tools.bench.report import BenchResult, workload_target_lines
from ioreactor_tools.bench.rounds import run_workload_rounds

if TYPE_CHECKING:
    from rich.console import Console

#: The issue's targets: ioreactor.aio's CPU per message over each peer's, at most.
TARGETS: dict[str, dict[str, float]] = {
    "protocol-echo": {"asyncio": 0.8, "uvloop": 1.0},
    "streams-echo": {"asyncio": 0.85},
    "aiohttp-hello": {"asyncio": 0.9},
}


@dataclass(frozen=True)
class AioBenchConfig:
    workloads: tuple[str, ...] = tuple(WORKLOADS)
    conns: tuple[int, ...] = (100, 1000)
    loops: tuple[str, ...] = LOOPS
    size: int = 1024
    duration: float = 10.0
    warmup: float = WARMUP
    poller: str | None = None
    #: Repeat the whole comparison (loops interleaved); verdicts use the median.
    rounds: int = 1


def measure(
    workload: str, loop: str, conns: int, config: AioBenchConfig, plan: CorePlan
) -> BenchResult:
    """One program on one loop at one connection count."""
    port = free_port()
    command = server_command(workload, loop, port, config.poller if loop == "ioreactor" else None)
    if WORKLOADS[workload] == "http":
        result = measure_http_server(
            loop, command, port, conns, plan, duration=config.duration, warmup=config.warmup
        )
    else:
        echo = EchoBenchConfig(
            conns=(conns,), size=config.size, duration=config.duration, warmup=config.warmup
        )
        result = measure_echo_server(loop, command, port, conns, echo, plan)
    result.extra["workload"] = workload
    return result


def run_aio_bench(config: AioBenchConfig, *, console: Console) -> list[BenchResult]:
    """Every workload on every loop at every connection count; this process is the load."""
    plan = core_plan()
    pin_current_process(plan.load)
    return run_workload_rounds(
        config,
        config.loops,
        unavailable=unavailable,
        measure=lambda workload, loop, conns: measure(workload, loop, conns, config, plan),
        console=console,
    )


def target_lines(results: Sequence[BenchResult]) -> list[str]:
    """Per workload, connection count and peer: ioreactor.aio's ratio against its target
    (with several rounds, the median of the per-round ratios)."""
    return workload_target_lines(results, TARGETS, label="ioreactor.aio")
