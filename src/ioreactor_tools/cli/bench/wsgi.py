"""`ioreactor bench wsgi`: Flask and Django on ioreactor vs gunicorn, waitress, uvicorn."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from ioreactor.cli.arguments import (
    names_from,
    output_dir,
    positive_count,
    seconds,
    seconds_or_zero,
)
from ioreactor_tools.bench.chart import bar_chart
from ioreactor_tools.bench.report import RESULTS_DIR, print_table, timestamped
from ioreactor_tools.bench.wsgi_bench import (
    APPS,
    BASELINE,
    SERVERS,
    WsgiBenchConfig,
    run_wsgi_bench,
    verdict_lines,
)
from ioreactor_tools.cli.bench._args import (
    add_conns_option,
    config_from_args,
    pinned_plan,
    save_results,
)
from ioreactor_tools.cli.console import report_console


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "wsgi",
        help="WSGI apps (Flask, Django) on ioreactor vs gunicorn, waitress, uvicorn; slowloris",
        description="Serves a Flask hello and a Django JSON view with each server, one "
        "process pinned to one core with the same thread count, wrk on the other core; "
        "prints server CPU µs per request with the ratio to gunicorn gthread, then the "
        "share of its keep-alive throughput each server keeps under a slowloris attack.",
    )
    p.add_argument(
        "--apps", type=names_from(APPS, "app"), default=tuple(APPS), help="comma-separated"
    )
    add_conns_option(p)
    p.add_argument(
        "--servers",
        type=names_from(SERVERS, "server"),
        default=tuple(SERVERS),
        help="comma-separated (default: all)",
    )
    p.add_argument("--threads", type=positive_count, default=8, help="threads per server")
    p.add_argument("--duration", type=seconds, default=10.0, help="measured seconds per run")
    p.add_argument("--warmup", type=seconds_or_zero, default=2.0, help="unmeasured seconds first")
    p.add_argument("--slow", type=positive_count, default=1000, help="slowloris connections")
    p.add_argument("--no-slowloris", action="store_true", help="skip the slowloris comparison")
    p.add_argument(
        "--out", type=output_dir, default=str(RESULTS_DIR), help="directory for JSON and PNG"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    config = config_from_args(WsgiBenchConfig, args, slowloris=not args.no_slowloris)
    command = (
        f"ioreactor bench wsgi --apps {','.join(config.apps)} "
        f"--conns {','.join(map(str, config.conns))} --servers {','.join(config.servers)} "
        f"--threads {config.threads} --duration {config.duration:g} --slow {config.slow}"
        + (" --no-slowloris" if not config.slowloris else "")
    )
    console = report_console()
    console.print(f"[bold]{command}[/]")
    pinned_plan(console)
    report = run_wsgi_bench(config, progress=lambda text: console.print(f"[dim]{text}[/]"))
    for app in config.apps:
        results = [r for r in report.results if r.extra.get("app") == app]
        if results:
            print_table(
                results, [BASELINE], title=f"{app}: server CPU µs per request", console=console
            )
    for line in verdict_lines(report):
        console.print(line)
    out = Path(args.out)
    meta = {
        "config": dataclasses.asdict(config),
        "slowloris": [run_.to_dict() for run_ in report.slowloris],
    }
    save_results(console, args.out, "wsgi", report.results, command, meta)
    for app in config.apps:
        results = [r for r in report.results if r.extra.get("app") == app]
        chart = bar_chart(results, timestamped(f"wsgi-{app}", "png", out), title=command)
        if chart is not None:
            console.print(f"chart: {chart}")
    if report.slowloris:
        console.print(json.dumps({r.server: round(r.kept, 3) for r in report.slowloris}))
    return 0
