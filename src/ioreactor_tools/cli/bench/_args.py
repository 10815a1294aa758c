"""Options and console helpers shared by the ``ioreactor bench`` commands (their argument
types are the shared ones of :mod:`ioreactor.cli.arguments`).

The leading underscore keeps the CLI loader from taking this module for a command. It
imports nothing heavy: rich is imported inside the function that builds the console, so
a command that does not run a benchmark does not load it.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ioreactor.loop.poller import available_pollers
from ioreactor_tools.bench.report import BenchResult, timestamped, write_json

if TYPE_CHECKING:  # rich is imported where the console is built
    from rich.console import Console

    from ioreactor_tools.bench.pinning import CorePlan


def add_poller_option(p: argparse.ArgumentParser, help: str | None = None) -> None:
    """``--poller``: one of the poller backends this OS offers (default: the loop's)."""
    p.add_argument("--poller", choices=available_pollers(), default=None, help=help)


def warn_if_unpinned(console: Console, plan: CorePlan) -> None:
    """Say so when the machine has too few cores to pin server and load apart."""
    if not plan.pinned:
        console.print("[yellow]fewer than two usable cores: server and load are NOT pinned[/]")


def save_results(
    console: Console,
    out: str,
    stem: str,
    results: Sequence[BenchResult],
    command: str,
    meta: dict[str, Any],
) -> Path:
    """Write ``results`` as ``<out>/<stem>-<time>.json`` and print where they went."""
    path = write_json(timestamped(stem, "json", Path(out)), results, command=command, meta=meta)
    console.print(f"results: {path}")
    return path
