"""`ioreactor bench echo`: echo server CPU per message against the asyncio/uvloop peers."""

from __future__ import annotations

import argparse

from ioreactor.cli.arguments import (
    names_from,
    positive_count,
)
from ioreactor_tools.bench.chart import bar_chart
from ioreactor_tools.bench.echo_bench import (
    ECHO_SERVERS,
    WARMUP,
    EchoBenchConfig,
    run_echo_bench,
    target_lines,
)
from ioreactor_tools.cli.bench._args import (
    add_conns_option,
    add_out_option,
    add_poller_option,
    add_rounds_option,
    add_size_option,
    add_window_options,
    config_from_args,
    rerun_command,
    run_comparison,
)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "echo",
        help="TCP echo: ioreactor vs asyncio vs uvloop, server CPU µs per message",
        description="Runs each echo server pinned to one core with the load on another, "
        "reads the server's CPU time from /proc around a fixed window, and prints CPU µs "
        "per message, messages/s, latency and RSS with the ratio to each peer.",
    )
    add_conns_option(p)
    add_size_option(p)
    add_window_options(p, duration=10.0, warmup=WARMUP)
    p.add_argument(
        "--pipeline", type=positive_count, default=1, help="messages in flight per connection"
    )
    add_rounds_option(
        p,
        "repeat the whole comparison N times, servers interleaved; the table shows "
        "each server's median round, the verdicts the median of the per-round ratios",
    )
    add_poller_option(p, help="ioreactor's backend")
    p.add_argument(
        "--servers",
        type=names_from(ECHO_SERVERS, "server"),
        default=tuple(ECHO_SERVERS),
        help="comma-separated",
    )
    add_out_option(p)
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def reproduce_command(config: EchoBenchConfig) -> str:
    """The command line that reruns this benchmark."""
    options = [f"--size {config.size}"]
    if config.pipeline != 1:
        options.append(f"--pipeline {config.pipeline}")
    if config.poller:
        options.append(f"--poller {config.poller}")
    if config.servers != tuple(ECHO_SERVERS):
        options.append(f"--servers {','.join(config.servers)}")
    return rerun_command("echo", config, *options)


def run(args: argparse.Namespace) -> int:
    config = config_from_args(EchoBenchConfig, args)
    return run_comparison(
        args,
        config,
        run_echo_bench,
        stem="echo",
        title=f"TCP echo, {config.size} B ping-pong, {config.duration:g} s per server",
        chart=bar_chart,
        verdicts=target_lines,
        command=reproduce_command(config),
    )
