"""`ioreactor bench asgi`: ASGI servers side by side (ioreactor, uvicorn, granian, hypercorn)."""

from __future__ import annotations

import argparse
import dataclasses

from ioreactor.cli.arguments import (
    count_list,
    names_from,
    one_of,
    output_dir,
    positive_count,
    seconds,
    seconds_or_zero,
)
from ioreactor_tools.bench.asgi_bench import (
    LOADS,
    WARMUP,
    AsgiBenchConfig,
    of_workload,
    run_asgi_bench,
    target_lines,
)
from ioreactor_tools.bench.asgi_servers import SERVERS, WORKLOADS
from ioreactor_tools.bench.chart import bar_chart
from ioreactor_tools.bench.report import RESULTS_DIR, median_rounds, print_table
from ioreactor_tools.cli.bench._args import pinned_plan, save_results
from ioreactor_tools.cli.console import report_console


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
    p.add_argument("--conns", type=count_list, default=(100, 1000), help="e.g. 100,1000")
    p.add_argument(
        "--servers", type=names_from(SERVERS, "server"), default=SERVERS, help="comma-separated"
    )
    p.add_argument("--size", type=positive_count, default=1024, help="WebSocket message bytes")
    p.add_argument("--duration", type=seconds, default=10.0, help="measured seconds per run")
    p.add_argument(
        "--warmup", type=seconds_or_zero, default=WARMUP, help="unmeasured seconds first"
    )
    p.add_argument("--rounds", type=positive_count, default=1, help="repeat the comparison N times")
    p.add_argument(
        "--load",
        type=one_of(LOADS, "load"),
        default="auto",
        help="HTTP load: wrk, ioreactor's generator, or auto (wrk when installed)",
    )
    p.add_argument(
        "--out", type=output_dir, default=str(RESULTS_DIR), help="directory for JSON and PNG"
    )
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
    config = AsgiBenchConfig(
        workloads=args.workloads,
        conns=args.conns,
        servers=args.servers,
        size=args.size,
        duration=args.duration,
        warmup=args.warmup,
        rounds=args.rounds,
        load=args.load,
    )
    plan = pinned_plan(console)
    results = run_asgi_bench(config, console=console)
    baselines = [
        s for s in ("uvicorn", "granian", "hypercorn") if any(r.name == s for r in results)
    ]
    for workload in config.workloads:
        mine = of_workload(results, workload)
        if not mine:
            continue
        shown = median_rounds(mine) if config.rounds > 1 else mine
        title = (
            f"{workload}: ioreactor vs uvicorn vs granian vs hypercorn, {config.duration:g} s "
            f"per run (server on core {plan.server}, load on core {plan.load})"
        )
        print_table(shown, baselines, title=title, console=console)
    for line in target_lines(results):
        console.print(line)
    command = reproduce_command(config)
    console.print(f"command: {command}")
    json_path = save_results(
        console,
        args.out,
        "asgi",
        results,
        command,
        {"config": dataclasses.asdict(config), "cores": dataclasses.asdict(plan)},
    )
    for workload in config.workloads:
        mine = of_workload(results, workload)
        if not mine:
            continue
        shown = median_rounds(mine) if config.rounds > 1 else mine
        path = json_path.with_name(f"{json_path.stem}-{workload}.png")
        chart = bar_chart(shown, path, title=f"{workload}: server CPU µs per op")
        if chart is not None:
            console.print(f"chart:   {chart}")
    return 1 if any(r.error_count for r in results) else 0
