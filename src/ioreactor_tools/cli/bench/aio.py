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
    add_poller_option,
    add_size_option,
    add_workload_comparison_options,
    rerun_command,
    run_workload_comparison,
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
    add_workload_comparison_options(p, WORKLOADS, warmup=WARMUP)
    p.add_argument("--loops", type=names_from(LOOPS, "loop"), default=LOOPS, help="comma-separated")
    add_size_option(p, what="echo message")
    add_poller_option(p, help="ioreactor.aio's backend")
    p.set_defaults(func=run)


def reproduce_command(config: AioBenchConfig) -> str:
    options = [f"--workloads {','.join(config.workloads)}", f"--size {config.size}"]
    if config.loops != LOOPS:
        options.append(f"--loops {','.join(config.loops)}")
    if config.poller:
        options.append(f"--poller {config.poller}")
    return rerun_command("aio", config, *options)


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
