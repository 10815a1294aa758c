"""`ioreactor bench http`: the HTTP server against minimal asyncio/uvloop+httptools peers
and nginx, CPU per request (the engine: :mod:`ioreactor_tools.bench.http_comparison`).

Prints the table (with ``--rounds N``, each server's median round), the targets judged by
the median of the per-round ratios, and writes JSON (every round) and a PNG (req/s and
CPU µs/req against connections). A requested server that cannot run here is named with
what it needs, when the run starts and again with the verdicts.
"""

from __future__ import annotations

import argparse

from ioreactor.cli.arguments import (
    count_list,
    names_from,
    positive_count,
)
from ioreactor_tools.bench.chart import line_plot
from ioreactor_tools.bench.http_comparison import (
    DEFAULT_SERVERS,
    HTTP_SERVERS,
    KEEPALIVE_CONNS,
    PIPELINED_CONNS,
    TABLE_PEERS,
    HttpBenchConfig,
    WrkMissing,
    load_kind,
    run_http_bench,
    skipped_servers,
    target_lines,
)
from ioreactor_tools.bench.pinning import WARMUP
from ioreactor_tools.cli.bench._args import (
    add_out_option,
    add_poller_option,
    add_rounds_option,
    add_window_options,
    config_from_args,
    rerun_command,
    run_comparison,
)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "http",
        help="HTTP keep-alive GET /: ioreactor vs asyncio/uvloop+httptools and nginx, "
        "CPU µs per request",
        description="Runs each HTTP server pinned to one core with the load (wrk if installed, "
        "else ioreactor's own generator) on another, reads the server's CPU time from /proc "
        "around a fixed window, and prints CPU µs per request, req/s, latency and RSS with "
        "the ratio to each peer; writes JSON and a PNG.",
    )
    p.add_argument(
        "--conns",
        type=count_list,
        default=None,
        help="e.g. 100,1000,10000 (default: that, or 256 with --pipeline > 1)",
    )
    add_window_options(p, duration=10.0, warmup=WARMUP)
    p.add_argument(
        "--pipeline", type=positive_count, default=1, help="requests per write (default 1)"
    )
    add_poller_option(p, help="ioreactor's backend")
    p.add_argument(
        "--servers",
        type=names_from(HTTP_SERVERS, "server"),
        default=DEFAULT_SERVERS,
        help=f"comma-separated, of: {', '.join(HTTP_SERVERS)} "
        f"(default: {','.join(DEFAULT_SERVERS)})",
    )
    p.add_argument(
        "--load",
        choices=("auto", "wrk", "ioreactor"),
        default="auto",
        help="load generator (default: wrk when installed)",
    )
    add_rounds_option(
        p,
        "repeat the whole cycle; show each server's median round and judge the targets "
        "by the median per-round ratio (default 1; odd counts have a true median)",
    )
    add_out_option(p)
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def reproduce_command(config: HttpBenchConfig, load: str) -> str:
    """The command line that reruns this benchmark."""
    options = [f"--pipeline {config.pipeline}", f"--load {load}"]
    if config.poller:
        options.append(f"--poller {config.poller}")
    if config.servers != DEFAULT_SERVERS:
        options.append(f"--servers {','.join(config.servers)}")
    return rerun_command("http", config, *options)


def run(args: argparse.Namespace) -> int:
    conns = args.conns or (PIPELINED_CONNS if args.pipeline > 1 else KEEPALIVE_CONNS)
    config = config_from_args(HttpBenchConfig, args, conns=conns)
    try:
        load = load_kind(config.load)
    except WrkMissing:
        raise SystemExit("ioreactor bench http: --load wrk, but wrk is not installed") from None
    skipped = skipped_servers(config.servers)
    return run_comparison(
        args,
        config,
        run_http_bench,
        stem="http",
        title=f"HTTP keep-alive GET /, {config.pipeline} request(s) per write, "
        f"{config.duration:g} s per server, load {load}",
        chart=line_plot,
        verdicts=lambda results: target_lines(results, config.pipeline, skipped),
        command=reproduce_command(config, load),
        peers=TABLE_PEERS,
    )
