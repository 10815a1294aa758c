"""Options and console helpers shared by the ``ioreactor bench`` commands (their argument
types are the shared ones of :mod:`ioreactor.cli.arguments`).

The leading underscore keeps the CLI loader from taking this module for a command. It
imports nothing heavy: rich is imported inside the function that builds the console, so
a command that does not run a benchmark does not load it.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from ioreactor.cli.arguments import (
    count_list,
    names_from,
    output_dir,
    positive_count,
    seconds,
    seconds_or_zero,
)
from ioreactor.loop.poller import available_pollers
from ioreactor_tools.bench.chart import bar_chart
from ioreactor_tools.bench.pinning import core_plan
from ioreactor_tools.bench.report import (
    RESULTS_DIR,
    BenchResult,
    median_rounds,
    of_workload,
    print_table,
    timestamped,
    write_json,
)

if TYPE_CHECKING:  # rich is imported where the console is built
    from _typeshed import DataclassInstance
    from rich.console import Console

    from ioreactor_tools.bench.pinning import CorePlan
    from ioreactor_tools.bench.rounds import WorkloadComparison


class MeasuredComparison(Protocol):
    """What every comparison's command line states: the connection counts, the measured
    window and its warm-up, and the rounds (its configuration, or its parsed options)."""

    @property
    def conns(self) -> Sequence[int]: ...
    @property
    def duration(self) -> float: ...
    @property
    def warmup(self) -> float: ...
    @property
    def rounds(self) -> int: ...


if TYPE_CHECKING:

    class ComparisonConfig(MeasuredComparison, DataclassInstance, Protocol):
        """A one-table comparison's configuration dataclass (echo's, http's)."""

    class WorkloadComparisonConfig(WorkloadComparison, DataclassInstance, Protocol):
        """A workload comparison's configuration dataclass (aio's, asgi's)."""


T = TypeVar("T", bound="DataclassInstance")
#: A workload comparison's configuration class.
C = TypeVar("C", bound="WorkloadComparisonConfig")

#: The peers a table's ratios are against, where they ran.
PEERS = ("asyncio", "uvloop")


def add_engine_command(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    help: str,
    engine: ModuleType,
) -> None:
    """``ioreactor bench NAME`` for an engine module that declares its own options
    (``add_arguments(parser)``) and runs them (``run(args)``); its docstring describes it."""
    p = subparsers.add_parser(
        name,
        help=help,
        description=engine.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    engine.add_arguments(p)
    p.set_defaults(func=engine.run)


def add_poller_option(p: argparse.ArgumentParser, help: str | None = None) -> None:
    """``--poller``: one of the poller backends this OS offers (default: the loop's)."""
    p.add_argument("--poller", choices=available_pollers(), default=None, help=help)


def add_workloads_option(p: argparse.ArgumentParser, workloads: Iterable[str]) -> None:
    """``--workloads``: comma-separated names out of ``workloads`` (default: all)."""
    names = tuple(workloads)
    p.add_argument(
        "--workloads",
        type=names_from(names, "workload"),
        default=names,
        help="comma-separated (default: all)",
    )


def add_conns_option(p: argparse.ArgumentParser, help: str = "e.g. 100,1000") -> None:
    """``--conns``: the connection counts, one run each (default 100 and 1000)."""
    p.add_argument("--conns", type=count_list, default=(100, 1000), help=help)


def add_size_option(p: argparse.ArgumentParser, default: int = 1024, what: str = "message") -> None:
    """``--size``: the bytes of each ``what`` the load sends."""
    p.add_argument(
        "--size", type=positive_count, default=default, help=f"{what} bytes (default %(default)s)"
    )


def add_window_options(
    p: argparse.ArgumentParser,
    *,
    duration: float,
    warmup: float | None,
    per: str = "server",
    warmup_help: str = "unmeasured seconds first",
) -> None:
    """``--duration`` (the measured window, per ``per``) and ``--warmup`` before it."""
    p.add_argument("--duration", type=seconds, default=duration, help=f"measured seconds per {per}")
    p.add_argument("--warmup", type=seconds_or_zero, default=warmup, help=warmup_help)


def add_rounds_option(p: argparse.ArgumentParser, help: str) -> None:
    """``--rounds``: how many times the whole comparison runs (default 1)."""
    p.add_argument("--rounds", type=positive_count, default=1, help=help)


def add_out_option(p: argparse.ArgumentParser, what: str = "JSON and PNG") -> None:
    """``--out``: the directory the results go to (default ``bench-results``)."""
    p.add_argument("--out", type=output_dir, default=str(RESULTS_DIR), help=f"directory for {what}")


def add_workload_comparison_options(
    p: argparse.ArgumentParser, workloads: Iterable[str], *, warmup: float
) -> None:
    """The options :func:`run_workload_comparison` reads: ``--workloads`` (out of
    ``workloads``), ``--conns``, each run's ``--duration`` and ``--warmup``, ``--rounds``
    and ``--out``."""
    add_workloads_option(p, workloads)
    add_conns_option(p)
    add_window_options(p, duration=10.0, warmup=warmup, per="run")
    add_rounds_option(p, "repeat the comparison N times")
    add_out_option(p)


def config_from_args(config_class: type[T], args: argparse.Namespace, **given: Any) -> T:
    """A benchmark's configuration dataclass with each field taken from the option of
    the same name (``given`` first; a field without an option keeps its default)."""
    names = {f.name for f in dataclasses.fields(config_class)}
    values = {name: getattr(args, name) for name in names if hasattr(args, name)}
    return config_class(**{**values, **given})


def pinned_plan(console: Console) -> CorePlan:
    """The cores for server and load, said out loud when the machine has too few to
    pin them apart."""
    plan = core_plan()
    if not plan.pinned:
        console.print("[yellow]fewer than two usable cores: server and load are NOT pinned[/]")
    return plan


def peers_in(results: Sequence[BenchResult], peers: Sequence[str] = PEERS) -> list[str]:
    """The ``peers`` that have a row among ``results`` (the ratio columns of a table)."""
    return [name for name in peers if any(r.name == name for r in results)]


def report_run(
    console: Console,
    out: str,
    stem: str,
    results: Sequence[BenchResult],
    *,
    verdicts: Iterable[str],
    command: str,
    config: Any,
    plan: CorePlan,
) -> Path:
    """The end every comparison shares: its verdicts, the command that reruns it, and
    the results saved as ``<out>/<stem>-<time>.json`` with its configuration and cores."""
    for line in verdicts:
        console.print(line)
    console.print(f"command: {command}")
    meta = {"config": dataclasses.asdict(config), "cores": dataclasses.asdict(plan)}
    return save_results(console, out, stem, results, command, meta)


def rounds_note(rounds: int) -> str:
    """What a table title says of several rounds (each server's median round shown)."""
    return f", median of {rounds} rounds" if rounds > 1 else ""


def run_comparison(
    args: argparse.Namespace,
    config: ComparisonConfig,
    engine: Callable[..., list[BenchResult]],
    *,
    stem: str,
    title: str,
    chart: Callable[..., Path | None],
    verdicts: Callable[[Sequence[BenchResult]], Iterable[str]],
    command: str,
    peers: Sequence[str] = PEERS,
) -> int:
    """A one-table comparison (servers against the ``peers`` that ran: asyncio and uvloop
    unless told) from its configuration to its exit status: the cores, ``engine(config,
    console=..., progress=...)`` (a progress bar on a terminal unless ``--no-progress``),
    the table under ``title`` and the cores, :func:`report_run`, then ``chart(rows, path,
    title=...)`` beside the JSON."""
    from ioreactor_tools.cli.console import report_console

    console = report_console()
    plan = pinned_plan(console)
    progress = not args.no_progress and console.is_terminal
    results = engine(config, console=console, progress=progress)
    title = (
        f"{title}{rounds_note(config.rounds)} "
        f"(server on core {plan.server}, load on core {plan.load})"
    )
    shown = shown_rows(results, config.rounds)
    print_table(shown, peers_in(results, peers), title=title, console=console)
    json_path = report_run(
        console,
        args.out,
        stem,
        results,
        verdicts=verdicts(results),
        command=command,
        config=config,
        plan=plan,
    )
    path = chart(shown, json_path.with_suffix(".png"), title=title)
    if path is not None:
        console.print(f"chart:   {path}")
    return exit_status(results)


def shown_rows(results: Sequence[BenchResult], rounds: int) -> list[BenchResult]:
    """The rows a table or chart shows: with several rounds, each server's median round."""
    return median_rounds(results) if rounds > 1 else list(results)


def report_workloads(
    console: Console,
    out: str,
    stem: str,
    results: Sequence[BenchResult],
    config: WorkloadComparison,
    plan: CorePlan,
    *,
    lineup: str,
    peers: Sequence[str],
    verdicts: Iterable[str],
    command: str,
    unit: str,
) -> int:
    """The end of a workload comparison: one table per workload (``lineup`` names the
    servers, ratios against the ``peers`` that ran), the verdicts, the command, the JSON,
    one bar chart per workload; the exit status."""
    baselines = peers_in(results, peers)
    for workload in config.workloads:
        mine = of_workload(results, workload)
        if mine:
            title = (
                f"{workload}: {lineup}, {config.duration:g} s per run "
                f"(server on core {plan.server}, load on core {plan.load})"
            )
            shown = shown_rows(mine, config.rounds)
            print_table(shown, baselines, title=title, console=console)
    json_path = report_run(
        console, out, stem, results, verdicts=verdicts, command=command, config=config, plan=plan
    )
    for workload in config.workloads:
        mine = of_workload(results, workload)
        if not mine:
            continue
        path = json_path.with_name(f"{json_path.stem}-{workload}.png")
        title = f"{workload}: server CPU µs per {unit}"
        chart = bar_chart(shown_rows(mine, config.rounds), path, title=title)
        if chart is not None:
            console.print(f"chart:   {chart}")
    return exit_status(results)


def rerun_command(name: str, config: MeasuredComparison, *options: str) -> str:
    """The command line that reruns the comparison ``name`` (printed and saved with its
    results): its connection counts and measured window, then ``options`` (the command's
    own), then the rounds when there are several."""
    parts = [
        f"ioreactor bench {name}",
        f"--conns {','.join(map(str, config.conns))}",
        f"--duration {config.duration:g}",
        f"--warmup {config.warmup:g}",
        *options,
    ]
    if config.rounds > 1:
        parts.append(f"--rounds {config.rounds}")
    return " ".join(parts)


def run_workload_comparison(
    args: argparse.Namespace,
    config_class: type[C],
    engine: Callable[..., list[BenchResult]],
    *,
    stem: str,
    lineup: str,
    peers: Sequence[str],
    verdicts: Callable[[Sequence[BenchResult]], Iterable[str]],
    command: Callable[[C], str],
    unit: str,
) -> int:
    """A workload comparison from its options to its exit status: the configuration,
    the cores, ``engine(config, console=...)``, then :func:`report_workloads`."""
    from ioreactor_tools.cli.console import report_console

    console = report_console()
    config = config_from_args(config_class, args)
    plan = pinned_plan(console)
    results = engine(config, console=console)
    return report_workloads(
        console,
        args.out,
        stem,
        results,
        config,
        plan,
        lineup=lineup,
        peers=peers,
        verdicts=verdicts(results),
        command=command(config),
        unit=unit,
    )


def exit_status(results: Sequence[BenchResult]) -> int:
    """1 when any run counted errors, else 0."""
    return 1 if any(r.error_count for r in results) else 0


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
