"""The run order of a comparison: every round, (workload,) connection count and server,
skipping what cannot run here (said once), each run tagged with its round.

::

    run_workload_rounds(config, ... unavailable, measure) -> measure(workload, server, conns)
    run_server_rounds(config, ... unavailable, measure) -> measure(server, conns)
        -> [BenchResult with extra["round"], ...]  (servers interleaved inside a round)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol

from ioreactor_tools.bench.report import BenchResult

if TYPE_CHECKING:  # rich is imported where a console is built
    from rich.console import Console


class Comparison(Protocol):
    """What every comparison's configuration states: connection counts, the measured
    window's seconds, and how many rounds."""

    @property
    def conns(self) -> Sequence[int]: ...
    @property
    def duration(self) -> float: ...
    @property
    def rounds(self) -> int: ...


class WorkloadComparison(Comparison, Protocol):
    """A workload comparison's configuration (aio's, asgi's)."""

    @property
    def workloads(self) -> Sequence[str]: ...


class ServerComparison(Comparison, Protocol):
    """A comparison of servers' configuration (echo's, http's)."""

    @property
    def servers(self) -> Sequence[str]: ...


def run_workload_rounds(
    config: WorkloadComparison,
    servers: Sequence[str],
    *,
    unavailable: Callable[[str, str], str | None],
    measure: Callable[[str, str, int], BenchResult],
    console: Console,
    failures: tuple[type[Exception], ...] = (),
) -> list[BenchResult]:
    """``measure(workload, server, conns)`` for each combination, ``config.rounds``
    times; ``unavailable(workload, server)`` names why a server cannot run a workload
    (None: it can). A run raising one of ``failures`` is reported and left out."""
    rounds, conns, duration = config.rounds, config.conns, config.duration
    results = []
    for round_no in range(rounds):
        label = f"round {round_no + 1}/{rounds}: " if rounds > 1 else ""
        for workload in config.workloads:
            for count in conns:
                for server in servers:
                    if (reason := unavailable(workload, server)) is not None:
                        if round_no == 0 and count == conns[0]:
                            console.print(f"[yellow]skipping {workload} on {server}: {reason}[/]")
                        continue
                    console.print(
                        f"[dim]{label}{workload} on {server}: {count:,} conns, "
                        f"{duration:g} s ...[/]"
                    )
                    try:
                        result = measure(workload, server, count)
                    except failures as exc:
                        console.print(f"[red]{workload} on {server} failed: {exc}[/]")
                        continue
                    result.extra["round"] = round_no
                    results.append(result)
    return results


def run_server_rounds(
    config: ServerComparison,
    *,
    unavailable: Callable[[str], str | None],
    measure: Callable[[str, int], BenchResult],
    console: Console,
    detail: str = "",
) -> list[BenchResult]:
    """``measure(server, conns)`` for each connection count and server, ``config.rounds``
    times; ``unavailable(server)`` names why a server cannot run here (None: it can),
    said once. ``detail`` follows the window's length in each run's line."""
    skipped = {s: reason for s in config.servers if (reason := unavailable(s)) is not None}
    for name, reason in skipped.items():
        console.print(f"[yellow]skipping {name}: {reason}[/]")
    rounds, duration = config.rounds, config.duration
    results = []
    for round_no in range(rounds):
        label = f"round {round_no + 1}/{rounds}: " if rounds > 1 else ""
        for count in config.conns:
            for server in config.servers:
                if server in skipped:
                    continue
                console.print(
                    f"[dim]{label}{server}: {count:,} conns, {duration:g} s{detail} ...[/]"
                )
                result = measure(server, count)
                result.extra["round"] = round_no
                results.append(result)
    return results
