"""One HTTP server measured under keep-alive load: what ``bench http``, ``bench aio``,
``bench asgi`` and ``bench wsgi`` each run for one server and connection count.

::

    ServerProcess (pinned to the server core) <-- keep-alive GET / from the load core:
        wrk, or ioreactor's own generator (:mod:`ioreactor_tools.bench.http_load`)
    on_start / on_end of the measured window --> the server's process-tree samples
        --> BenchResult: server CPU per request, req/s, latency, RSS

The load's processes are as many as the connections need (each has its own fd limit).
"""

from __future__ import annotations

from collections.abc import Sequence

from ioreactor_tools.bench.http_load import (
    HttpLoadConfig,
    HttpLoadResult,
    WrkResult,
    run_http_load,
    run_wrk,
)
from ioreactor_tools.bench.pinning import READY_TIMEOUT, CorePlan, ServerProcess, ServerWindow
from ioreactor_tools.bench.report import BenchResult, load_window_result
from ioreactor_tools.bench.tcp_load import load_processes


def measure_http(
    server: ServerProcess,
    name: str,
    config: HttpLoadConfig,
    *,
    load: str,
    load_core: int | None,
    progress: bool = False,
) -> BenchResult:
    """Drive the running ``server`` with ``load`` (``wrk`` or ``ioreactor``) as
    ``config`` says, and charge its CPU over the measured window per request."""
    window = ServerWindow(server)
    result: WrkResult | HttpLoadResult
    if load == "wrk":
        result = run_wrk(config, core=load_core, on_start=window.open, on_end=window.close)
        connected = config.conns  # wrk does not say
    else:
        result = run_http_load(config, on_start=window.open, on_end=window.close, progress=progress)
        connected = result.connected
    return load_window_result(
        name,
        config.conns,
        result,
        window,
        extra={
            "pipeline": config.pipeline,
            "load": load,
            "connected": connected,
            "server_fds": window.after.fds,
            "command": " ".join(server.command),
        },
    )


def measure_http_server(
    name: str,
    command: Sequence[str],
    port: int,
    conns: int,
    plan: CorePlan,
    *,
    duration: float,
    warmup: float,
    load: str = "ioreactor",
    pipeline: int = 1,
    poller: str | None = None,
    ready_timeout: float = READY_TIMEOUT,
    progress: bool = False,
) -> BenchResult:
    """Start ``command`` pinned to the server core, measure it with :func:`measure_http`
    (``poller``: the generator's own loop), stop it."""
    config = HttpLoadConfig(
        host="127.0.0.1",
        port=port,
        conns=conns,
        duration=duration,
        warmup=warmup,
        pipeline=pipeline,
        procs=load_processes(conns),
        poller=poller,
    )
    with ServerProcess(command, port=port, core=plan.server, ready_timeout=ready_timeout) as server:
        return measure_http(server, name, config, load=load, load_core=plan.load, progress=progress)
