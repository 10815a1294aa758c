"""``ioreactor lab c10k``: every server model at rising concurrency, table + plot + report."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ioreactor.cli.arguments import count_list, fraction, names_from, output_dir, seconds
from ioreactor_tools.cli.console import report_console
from ioreactor_tools.cli.lab._render import render
from ioreactor_tools.lab import c10k, c10k_report


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("c10k", help="the course's server models at rising concurrency")
    p.add_argument(
        "--quick",
        action="store_true",
        help=f"levels {','.join(map(str, c10k.QUICK_LEVELS))}, 2 s windows "
        "(about 1.5 minutes: 76-108 s measured on a 2-core machine)",
    )
    p.add_argument(
        "--levels",
        type=count_list,
        default=None,
        help=f"comma-separated connection counts (default {','.join(map(str, c10k.FULL_LEVELS))})",
    )
    p.add_argument(
        "--models",
        type=names_from(c10k.MODELS, "model"),
        default=c10k.MODELS,
        help=f"comma-separated (default {','.join(c10k.MODELS)})",
    )
    p.add_argument(
        "--duration",
        type=seconds,
        default=None,
        help="measured seconds per step (default 2 quick, 5 full)",
    )
    p.add_argument(
        "--step-limit",
        type=seconds,
        default=None,
        help="seconds before a step's server is killed (default 60 quick, 120 full)",
    )
    p.add_argument(
        "--memory-fraction",
        type=fraction,
        default=0.25,
        help="stop a model predicted to need more of MemAvailable (default 0.25)",
    )
    p.add_argument(
        "--out",
        type=output_dir,
        default=None,
        help="directory for c10k.png, report.md, results.json (default lab-results/c10k-TIMESTAMP)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    config = c10k.C10kConfig(
        models=args.models,
        levels=args.levels or (c10k.QUICK_LEVELS if args.quick else c10k.FULL_LEVELS),
        duration=args.duration or (2.0 if args.quick else 5.0),
        warmup=0.5 if args.quick else 1.0,
        step_limit=args.step_limit or (60.0 if args.quick else 120.0),
        memory_fraction=args.memory_fraction,
    )
    console = report_console()
    total = len(config.models) * len(config.levels)
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        task = progress.add_task("c10k", total=total)
        left = {model: len(config.levels) for model in config.models}

        def on_step(step: c10k.Step) -> None:
            left[step.model] -= 1
            advance = 1
            if not step.ok:  # the model's higher levels are skipped
                advance += left[step.model]
                left[step.model] = 0
            progress.update(task, advance=advance, description=f"{step.model} {step.conns:,}")
            progress.console.print(
                f"{step.model} at {step.conns:,}: {step.status}"
                + (f" ({step.msg_per_s:,.0f} msg/s)" if step.ok else "")
            )

        steps = c10k.run(config, on_step)
    report = c10k_report.findings(steps, config)
    report.tables.append(c10k_report.steps_table(steps))
    out = args.out or Path("lab-results") / f"c10k-{time.strftime('%Y%m%d-%H%M%S')}"
    paths = c10k_report.write_outputs(steps, report, config, out)
    code = render(report, console)
    for kind, path in paths.items():
        console.print(f"{kind}: {path}")
    return code
