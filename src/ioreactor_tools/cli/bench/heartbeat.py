"""`ioreactor bench heartbeat`: idle heartbeating connections and frame decoding cost.

Only the arguments live here; the benchmark is :mod:`ioreactor_tools.bench.heartbeat_bench`,
imported when the command runs so that other commands do not load it.
"""

from __future__ import annotations

import argparse

from ioreactor.cli.arguments import (
    count_list,
    names_from,
    positive_count,
    seconds,
)
from ioreactor_tools.bench import PEER_SERVERS
from ioreactor_tools.cli.bench._args import add_out_option, add_poller_option, add_window_options


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "heartbeat",
        help="server CPU of N idle heartbeating connections, and per length-prefixed frame",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--only", choices=("idle", "frames"), default=None, help="one part only")
    p.add_argument(
        "--conns",
        type=count_list,
        default=(1000, 5000, 10_000),
        help="idle: connection counts (default 1000,5000,10000)",
    )
    p.add_argument("--interval", type=seconds, default=1.0, help="idle: heartbeat interval (s)")
    p.add_argument(
        "--misses", type=positive_count, default=3, help="idle: unanswered pings allowed"
    )
    add_window_options(
        p,
        duration=10.0,
        warmup=None,
        per="run",
        warmup_help="unmeasured seconds first (default: 2 intervals idle, 1 s frames)",
    )
    p.add_argument("--frame-conns", type=positive_count, default=100, help="frames: connections")
    p.add_argument("--frame-size", type=positive_count, default=64, help="frames: payload bytes")
    p.add_argument("--frames-per-write", type=positive_count, default=16, help="frames: per write")
    p.add_argument(
        "--servers",
        type=names_from(PEER_SERVERS, "server"),
        default=PEER_SERVERS,
        help="ioreactor,asyncio,uvloop",
    )
    add_poller_option(p)
    add_out_option(p, "the JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ioreactor_tools.bench.heartbeat_bench import run as run_benchmark

    return run_benchmark(args)
