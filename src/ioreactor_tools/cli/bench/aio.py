"""`ioreactor bench aio`: asyncio programs on ioreactor.aio vs stdlib asyncio vs uvloop."""

from __future__ import annotations

import argparse

from ioreactor.cli.arguments import names_from
from ioreactor_tools.bench.aio_bench import (
    WARMUP,
    AioBenchConfig,
    run_aio_bench,
    target_lines,
)
from ioreactor_tools.bench.aio_servers import LOOPS, WORKLOADS
from ioreactor_tools.cli.bench._args import (
    PEERS,
    add_conns_option,
    add_out_option,
    add_poller_option,
    add_rounds_option,
    add_size_option,
    add_window_options,
    add_workloads_option,
    run_workload_comparison,
    workload_command,
)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "aio",
        help="asyncio programs on ioreactor.aio vs asyncio vs uvloop, server CPU µs per message",
        description="Runs the same asyncio program (Protocol echo, streams echo, aiohttp "
        "hello) on each loop, pinned to one core with the load on another, reads the "
        "server's CPU time from /proc around a fixed window, and prints CPU µs per message "
        "with the ratio to each peer loop.",
    )
    add_workloads_option(p, WORKLOADS)
    add_conns_option(p)
    p.add_argument("--loops", type=names_from(LOOPS, "loop"), default=LOOPS, help="comma-separated")
    add_size_option(p, what="echo message")
    add_window_options(p, duration=10.0, warmup=WARMUP, per="run")
    add_rounds_option(p, "repeat the comparison N times")
    add_poller_option(p, help="ioreactor.aio's backend")
    add_out_option(p)
    p.set_defaults(func=run)


def reproduce_command(config: AioBenchConfig) -> str:
    options = [f"--loops {','.join(config.loops)}"] if config.loops != LOOPS else []
    if config.poller:
        options.append(f"--poller {config.poller}")
    return workload_command("aio", config, *options)


def run(args: argparse.Namespace) -> int:
    return run_workload_comparison(
        args,
        AioBenchConfig,
        run_aio_bench,
        stem="aio",
        lineup="ioreactor.aio vs asyncio vs uvloop",
        peers=PEERS,
        verdicts=target_lines,
        command=reproduce_command,
        unit="message",
    )
