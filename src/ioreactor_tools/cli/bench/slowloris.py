"""`ioreactor bench slowloris`: normal keep-alive load with and without a slowloris attack.

``--slow`` connections trickle a request head one byte every ``--interval`` seconds
(replaced as the server closes them) while ``--conns`` keep-alive connections measure
throughput; the same load runs first without the attack. Reports the throughput ratio
(target >= 0.80), server CPU per request in both runs, and how every slow connection
ended (408 or a close, within the header timeout). Exit status 1 if a slow connection
outlived the header timeout or was closed before it.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from ioreactor.cli.arguments import positive_count, seconds
from ioreactor_tools.bench.report import timestamped
from ioreactor_tools.cli.bench._args import add_out_option, add_poller_option, config_from_args
from ioreactor_tools.cli.console import report_console


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "slowloris",
        help="normal keep-alive load with and without a slowloris attack",
        description=sys.modules[__name__].__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--slow", type=positive_count, default=5000, help="slow connections held at once"
    )
    p.add_argument("--duration", type=seconds, default=30.0, help="seconds of load per run")
    p.add_argument(
        "--conns", type=positive_count, default=100, help="normal keep-alive connections"
    )
    p.add_argument(
        "--interval", type=seconds, default=2.0, help="seconds between two bytes of a slow head"
    )
    p.add_argument(
        "--header-timeout", type=seconds, default=10.0, help="the server's --header-timeout"
    )
    p.add_argument("--workers", type=positive_count, default=1, help="the server's --workers")
    p.add_argument(
        "--load", choices=("auto", "wrk", "ioreactor"), default="auto", help="normal load"
    )
    add_poller_option(p)
    add_out_option(p, "the JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rich.table import Table

    from ioreactor_tools.bench.slowloris import SlowlorisConfig, run_slowloris, summary_lines

    config = config_from_args(SlowlorisConfig, args)
    command = (
        f"ioreactor bench slowloris --slow {args.slow} --duration {args.duration:g} "
        f"--conns {args.conns} --interval {args.interval:g} "
        f"--header-timeout {args.header_timeout:g} --workers {args.workers}"
    )
    console = report_console()
    console.print(f"[bold]{command}[/]")
    report = run_slowloris(config, command)
    table = Table(title=f"normal load ({report.load_kind}, {args.conns} keep-alive connections)")
    for column in ("run", "req/s", "server CPU µs/req", "p50 µs", "p99 µs", "errors"):
        table.add_column(column, justify="left" if column == "run" else "right")
    for label, run_ in (("alone", report.baseline), ("under attack", report.attacked)):
        table.add_row(
            label,
            f"{run_.requests_per_s:,.0f}",
            f"{run_.cpu_us_per_request:.1f}",
            "—" if math.isnan(run_.p50_us) else f"{run_.p50_us:,.0f}",
            "—" if math.isnan(run_.p99_us) else f"{run_.p99_us:,.0f}",
            ", ".join(f"{k} {v}" for k, v in sorted(run_.errors.items())) or "0",
        )
    console.print(table)
    for line in summary_lines(report):
        console.print(line)
    console.print(f"server RSS under attack: {report.server_rss_bytes / 2**20:.1f} MiB")
    path = timestamped("slowloris", "json", Path(args.out))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"command": command, **report.to_dict()}, indent=2) + "\n")
    console.print(f"results: {path}")
    return 0 if report.every_slow_connection_closed else 1
