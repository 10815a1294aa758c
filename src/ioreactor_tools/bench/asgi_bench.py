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

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ioreactor.net.sockopt import raise_nofile_limit
from ioreactor.testing import free_port
from ioreactor_tools.bench.asgi_servers import SERVERS, WORKLOADS, server_command, unavailable
from ioreactor_tools.bench.pinning import (
    CorePlan,
    ServerProcess,
    core_plan,
    pin_current_process,
)
from ioreactor_tools.bench.procstat import TreeSample
from ioreactor_tools.bench.report import BenchResult, workload_target_lines
from ioreactor_tools.bench.rounds import run_workload_rounds

if TYPE_CHECKING:
    from rich.console import Console

#: Seconds of unmeasured traffic on the same connections before each window.
WARMUP = 1.0
#: fds a load process keeps for itself besides its connections.
FD_RESERVE = 100
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


def http_load_kind(config: AsgiBenchConfig) -> str:
    from ioreactor_tools.bench.http_load import wrk_path

    if config.load == "auto":
        return "wrk" if wrk_path() is not None else "ioreactor"
    return config.load


def _sampled(server: ServerProcess, samples: dict[str, TreeSample], key: str) -> None:
    samples[key] = server.sample(count_fds=key == "after")


def _result(
    name: str,
    conns: int,
    samples: dict[str, TreeSample],
    ops: int,
    duration: float,
    latencies: tuple[float, float, float],
    errors: dict[str, int],
    unit: str,
    extra: dict[str, object],
) -> BenchResult:
    start, end = samples["before"], samples["after"]
    return BenchResult(
        name=name,
        conns=conns,
        ops=ops,
        duration=duration,
        server_cpu_seconds=end.cpu_seconds - start.cpu_seconds,
        server_user_seconds=end.user_seconds - start.user_seconds,
        p50_us=latencies[0],
        p99_us=latencies[1],
        p999_us=latencies[2],
        rss_bytes=end.rss_bytes,
        errors=errors,
        unit=unit,
        extra=extra,
    )


def measure_http(
    name: str,
    command: Sequence[str],
    port: int,
    conns: int,
    config: AsgiBenchConfig,
    plan: CorePlan,
) -> BenchResult:
    """Keep-alive ``GET /`` against ``command``, server CPU charged per request."""
    from ioreactor_tools.bench.http_load import HttpLoadConfig, run_http_load, run_wrk

    samples: dict[str, TreeSample] = {}
    per_process = max(1, raise_nofile_limit() - FD_RESERVE)
    load_config = HttpLoadConfig(
        host="127.0.0.1",
        port=port,
        conns=conns,
        duration=config.duration,
        warmup=config.warmup,
        procs=max(1, math.ceil(conns / per_process)),
    )
    load = http_load_kind(config)
    with ServerProcess(command, port=port, core=plan.server, ready_timeout=READY_TIMEOUT) as server:
        before = lambda: _sampled(server, samples, "before")  # noqa: E731
        after = lambda: _sampled(server, samples, "after")  # noqa: E731
        if load == "wrk":
            wrk = run_wrk(load_config, core=plan.load, on_start=before, on_end=after)
            ops, duration, errors = wrk.requests, wrk.duration, wrk.errors
            latencies = (wrk.p50_us, wrk.p99_us, float("nan"))
        else:
            result = run_http_load(load_config, on_start=before, on_end=after)
            ops, duration, errors = result.requests, result.duration, result.errors
            latencies = (result.latency_us(0.5), result.latency_us(0.99), result.latency_us(0.999))
    extra: dict[str, object] = {"load": load, "command": " ".join(command)}
    return _result(name, conns, samples, ops, duration, latencies, errors, "req", extra)


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

    samples: dict[str, TreeSample] = {}
    load_config = WsLoadConfig(
        "127.0.0.1", port, conns, size=config.size, duration=config.duration, warmup=config.warmup
    )
    with ServerProcess(command, port=port, core=plan.server, ready_timeout=READY_TIMEOUT) as server:
        result = run_ws_load(
            load_config,
            on_start=lambda: _sampled(server, samples, "before"),
            on_end=lambda: _sampled(server, samples, "after"),
        )
    latencies = (result.latency_us(0.5), result.latency_us(0.99), result.latency_us(0.999))
    extra: dict[str, object] = {
        "size": config.size,
        "connected": result.connected,
        "command": " ".join(command),
    }
    return _result(
        name, conns, samples, result.messages, result.duration, latencies, result.errors,
        "msg", extra,
    )  # fmt: skip


def measure(
    workload: str, server: str, conns: int, config: AsgiBenchConfig, plan: CorePlan
) -> BenchResult:
    """One application on one server at one connection count."""
    port = free_port()
    command = server_command(server, workload, port)
    if WORKLOADS[workload][1] == "websocket":
        result = measure_websocket(server, command, port, conns, config, plan)
    else:
        result = measure_http(server, command, port, conns, config, plan)
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
