"""`ioreactor bench idle`: RSS and Python heap per idle connection of the echo server."""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

from ioreactor.cli.arguments import positive_count
from ioreactor_tools.bench.idle_bench import HEAP_TARGET, run_idle_bench
from ioreactor_tools.bench.report import timestamped
from ioreactor_tools.cli.bench._args import add_out_option, add_poller_option


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "idle",
        help="memory per idle connection of the ioreactor echo server (RSS and heap)",
    )
    p.add_argument("--conns", type=positive_count, default=10_000, help="idle connections")
    add_poller_option(p)
    p.add_argument("--no-tracemalloc", action="store_true", help="RSS only (skip the heap server)")
    add_out_option(p, "the JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.conns < 1:
        raise SystemExit("ioreactor bench idle: --conns must be at least 1")
    from rich.console import Console
    from rich.table import Table

    console = Console()
    result = run_idle_bench(args.conns, poller=args.poller, heap=not args.no_tracemalloc)
    table = Table(title=f"ioreactor echo server, {args.conns:,} idle connections")
    for column in ("measure", "accepted", "before MiB", "after MiB", "bytes / connection"):
        table.add_column(column, justify="right" if column != "measure" else "left")
    readings = [("RSS", result.rss)] + ([("Python heap", result.heap)] if result.heap else [])
    for label, reading in readings:
        table.add_row(
            label,
            f"{reading.connected:,}",
            f"{reading.before / 2**20:.1f}",
            f"{reading.after / 2**20:.1f}",
            f"{reading.per_conn:,.0f}",
        )
    console.print(table)
    console.print(f"method: {result.method}")
    if result.heap is not None:
        verdict = "meets" if result.heap.per_conn <= HEAP_TARGET else "MISSES"
        console.print(
            f"Python heap per idle connection {result.heap.per_conn:,.0f} B: "
            f"{verdict} the target <= {HEAP_TARGET} B"
        )
    command = f"ioreactor bench idle --conns {args.conns}" + (
        f" --poller {args.poller}" if args.poller else ""
    )
    path = timestamped("idle", "json", Path(args.out))
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "command": command,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "result": dataclasses.asdict(result),
        "rss_per_conn": result.rss.per_conn,
        "heap_per_conn": None if result.heap is None else result.heap.per_conn,
    }
    path.write_text(json.dumps(doc, indent=2) + "\n")
    console.print(f"results: {path}")
    missing = any(r.connected < args.conns for _, r in readings)
    return 1 if missing else 0
