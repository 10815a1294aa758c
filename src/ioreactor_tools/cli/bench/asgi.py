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
    add_conns_option,
    add_out_option,
    add_rounds_option,
    add_size_option,
    add_window_options,
    config_from_args,
    pinned_plan,
    report_workloads,
)
from ioreactor_tools.cli.console import report_console

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
    p.add_argument(
        "--workloads",
        type=names_from(WORKLOADS, "workload"),
        default=tuple(WORKLOADS),
        help="comma-separated (default: all)",
    )
    add_conns_option(p)
    p.add_argument(
        "--servers", type=names_from(SERVERS, "server"), default=SERVERS, help="comma-separated"
    )
    add_size_option(p, what="WebSocket message")
    add_window_options(p, duration=10.0, warmup=WARMUP, per="run")
    add_rounds_option(p, "repeat the comparison N times")
    p.add_argument(
        "--load",
        type=one_of(LOADS, "load"),
        default="auto",
        help="HTTP load: wrk, ioreactor's generator, or auto (wrk when installed)",
    )
    add_out_option(p)
    p.set_defaults(func=run)


def reproduce_command(config: AsgiBenchConfig) -> str:
    parts = [
        "ioreactor bench asgi",
        f"--workloads {','.join(config.workloads)}",
        f"--conns {','.join(map(str, config.conns))}",
        f"--duration {config.duration:g}",
    ]
    if config.servers != SERVERS:
        parts.append(f"--servers {','.join(config.servers)}")
    if config.rounds > 1:
        parts.append(f"--rounds {config.rounds}")
    if config.load != "auto":
        parts.append(f"--load {config.load}")
    return " ".join(parts)


def run(args: argparse.Namespace) -> int:
    console = report_console()
    config = config_from_args(AsgiBenchConfig, args)
    plan = pinned_plan(console)
    results = run_asgi_bench(config, console=console)
    return report_workloads(
        console,
        args.out,
        "asgi",
        results,
        config,
        plan,
        lineup="ioreactor vs uvicorn vs granian vs hypercorn",
        peers=PEERS,
        verdicts=target_lines(results),
        command=reproduce_command(config),
        unit="op",
    )
