"""``ioreactor bench asgi``: ASGI servers side by side, server CPU per request or message.

For each workload (:mod:`ioreactor_tools.bench.asgi_servers`) and connection count, the
same application runs on each server in turn, one worker pinned to the server core,
while the load runs on the other core: keep-alive ``GET /`` (wrk when installed, else
ioreactor's own HTTP generator) for the HTTP workloads, the WebSocket echo ping-pong of
:mod:`ioreactor_tools.bench.ws_load` for ``websocket-echo``. The server's process-tree
CPU time is read from ``/proc`` around the measured window, so ``CPU µs/op`` is server
CPU over exactly the requests (messages) counted; every ratio compares servers measured
in the same run, and with ``rounds`` > 1 the servers are interleaved and the verdicts
use the median of the per-round ratios.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ioreactor.testing import free_port
from ioreactor_tools.bench.asgi_servers import SERVERS, WORKLOADS, server_command, unavailable
from ioreactor_tools.bench.http_bench import measure_http_server
from ioreactor_tools.bench.http_load import load_kind
from ioreactor_tools.bench.pinning import WARMUP as WARMUP  # the CLI takes it from here
from ioreactor_tools.bench.pinning import (
    CorePlan,
    ServerProcess,
    ServerWindow,
    core_plan,
    pin_current_process,
)
from ioreactor_tools.bench.report import BenchResult, load_window_result, workload_target_lines
from ioreactor_tools.bench.rounds import run_workload_rounds

if TYPE_CHECKING:
    from rich.console import Console

#: Seconds a server gets to start listening (FastAPI's import is slow on a busy machine).
READY_TIMEOUT = 60.0
#: The issue's targets: ioreactor's server CPU per op over each peer's, at most.
TARGETS: dict[str, dict[str, float]] = {
    "hello": {"uvicorn": 0.6, "granian": 1.0},
    "fastapi-json": {"uvicorn": 0.6, "granian": 1.0},
    "websocket-echo": {"uvicorn": 0.6},
}
#: ``--load``: who drives the HTTP workloads.
LOADS = ("auto", "wrk", "ioreactor")


@dataclass(frozen=True)
class AsgiBenchConfig:
    workloads: tuple[str, ...] = tuple(WORKLOADS)
    conns: tuple[int, ...] = (100, 1000)
    servers: tuple[str, ...] = SERVERS
    size: int = 1024
    duration: float = 10.0
    warmup: float = WARMUP
    rounds: int = 1
    load: str = "auto"


def measure_websocket(
    name: str,
    command: Sequence[str],
    port: int,
    conns: int,
    config: AsgiBenchConfig,
    plan: CorePlan,
) -> BenchResult:
    """WebSocket echo ping-pong of ``config.size`` bytes, server CPU charged per message."""
    from ioreactor_tools.bench.ws_load import WsLoadConfig, run_ws_load

    load_config = WsLoadConfig(
        "127.0.0.1", port, conns, size=config.size, duration=config.duration, warmup=config.warmup
    )
    with ServerProcess(command, port=port, core=plan.server, ready_timeout=READY_TIMEOUT) as server:
        window = ServerWindow(server)
        result = run_ws_load(load_config, on_start=window.open, on_end=window.close)
    return load_window_result(
        name,
        conns,
        result,
        window,
        extra={"size": config.size, "connected": result.connected, "command": " ".join(command)},
    )


def measure(
    workload: str, server: str, conns: int, config: AsgiBenchConfig, plan: CorePlan
) -> BenchResult:
    """One application on one server at one connection count."""
    port = free_port()
    command = server_command(server, workload, port)
    if WORKLOADS[workload][1] == "websocket":
        result = measure_websocket(server, command, port, conns, config, plan)
    else:
        result = measure_http_server(
            server,
            command,
            port,
            conns,
            plan,
            duration=config.duration,
            warmup=config.warmup,
            load=load_kind(config.load),
            ready_timeout=READY_TIMEOUT,
        )
    result.extra["workload"] = workload
    return result


def run_asgi_bench(config: AsgiBenchConfig, *, console: Console) -> list[BenchResult]:
    """Every workload on every server at every connection count; this process is the load."""
    plan = core_plan()
    pin_current_process(plan.load)
    return run_workload_rounds(
        config,
        config.servers,
        unavailable=lambda workload, server: unavailable(server, workload),
        measure=lambda workload, server, conns: measure(workload, server, conns, config, plan),
        console=console,
        failures=(OSError, RuntimeError, TimeoutError),
    )


def target_lines(results: Sequence[BenchResult]) -> list[str]:
    """Per workload, connection count and peer: ioreactor's ratio against its target
    (with several rounds, the median of the per-round ratios)."""
    return workload_target_lines(results, TARGETS)
