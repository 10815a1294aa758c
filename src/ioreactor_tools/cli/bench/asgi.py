"""`ioreactor bench asgi`: ASGI servers side by side (ioreactor, uvicorn, granian, hypercorn)."""

from __future__ import annotations

import argparse

from ioreactor.cli.arguments import names_from, one_of
from ioreactor_tools.bench.asgi_bench import (
    LOADS,
    WARMUP,
    AsgiBenchConfig,
    run_asgi_bench,
    target_lines,
)
from ioreactor_tools.bench.asgi_servers import SERVERS, WORKLOADS
from ioreactor_tools.cli.bench._args import (
    add_size_option,
    add_workload_comparison_options,
    rerun_command,
    run_workload_comparison,
)

#: The peers a table's ratios are against, where they ran.
PEERS = ("uvicorn", "granian", "hypercorn")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "asgi",
        help="ASGI servers (ioreactor, uvicorn, granian, hypercorn), server CPU µs per op",
        description="Serves the same ASGI application (raw hello, a FastAPI JSON endpoint, a "
        "WebSocket echo) with each server, one worker pinned to one core with the load on "
        "another, reads the server's CPU time from /proc around a fixed window, and prints "
        "CPU µs per request (message) with the ratio to each peer.",
    )
    add_workload_comparison_options(p, WORKLOADS, warmup=WARMUP)
    p.add_argument(
        "--servers", type=names_from(SERVERS, "server"), default=SERVERS, help="comma-separated"
    )
    add_size_option(p, what="WebSocket message")
    p.add_argument(
        "--load",
        type=one_of(LOADS, "load"),
        default="auto",
        help="HTTP load: wrk, ioreactor's generator, or auto (wrk when installed)",
    )
    p.set_defaults(func=run)


def reproduce_command(config: AsgiBenchConfig) -> str:
    options = [f"--workloads {','.join(config.workloads)}", f"--size {config.size}"]
    if config.servers != SERVERS:
        options.append(f"--servers {','.join(config.servers)}")
    if config.load != "auto":
        options.append(f"--load {config.load}")
    return rerun_command("asgi", config, *options)


def run(args: argparse.Namespace) -> int:
    return run_workload_comparison(
        args,
        AsgiBenchConfig,
        run_asgi_bench,
        stem="asgi",
        lineup="ioreactor vs uvicorn vs granian vs hypercorn",
        peers=PEERS,
        verdicts=target_lines,
        command=reproduce_command,
        unit="op",
    )
