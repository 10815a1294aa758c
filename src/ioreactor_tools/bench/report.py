"""Benchmark results: one record per (server, load) run, a ratio table and JSON.

Every bench command produces :class:`BenchResult` records, prints them with
:func:`render_table` (a ratio column per named baseline: the server's CPU µs per
operation divided by the baseline's, at the same connection count, so 0.80 means 20 %
less CPU than the baseline) and saves them with :func:`write_json` so README tables can be
regenerated from the file (:func:`read_json`, :func:`markdown_table`).

``unit`` names one operation ("msg" for echo, "req" for HTTP), so the same table serves
every benchmark.
"""

from __future__ import annotations

import json
import math
import platform
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

if TYPE_CHECKING:  # rich is imported where a table is drawn
    from rich.console import Console
    from rich.table import Table

    from ioreactor_tools.bench.pinning import ServerWindow

#: Where bench commands write JSON and charts (gitignored).
RESULTS_DIR = Path("bench-results")


@dataclass
class BenchResult:
    """One measured run: a server under a fixed load for a fixed time."""

    name: str
    conns: int
    ops: int
    duration: float
    server_cpu_seconds: float
    p50_us: float
    p99_us: float
    p999_us: float
    rss_bytes: int
    errors: dict[str, int] = field(default_factory=dict)
    unit: str = "msg"
    #: Anything else worth keeping (payload size, poller, pipeline depth, fds, ...).
    extra: dict[str, Any] = field(default_factory=dict)
    #: The user-mode part of ``server_cpu_seconds`` (the rest is the kernel's: system
    #: calls and the TCP stack), where the run measured it.
    server_user_seconds: float | None = None

    @property
    def ops_per_s(self) -> float:
        return self.ops / self.duration if self.duration > 0 else 0.0

    @property
    def cpu_us_per_op(self) -> float:
        """Server CPU microseconds per operation (lower is better); NaN without ops."""
        return self.server_cpu_seconds * 1e6 / self.ops if self.ops else float("nan")

    @property
    def user_us_per_op(self) -> float:
        """The user-mode (interpreter) part of :attr:`cpu_us_per_op`; NaN if unknown."""
        if self.server_user_seconds is None or not self.ops:
            return float("nan")
        return self.server_user_seconds * 1e6 / self.ops

    @property
    def system_us_per_op(self) -> float:
        """The kernel-mode part of :attr:`cpu_us_per_op`; NaN if unknown."""
        return self.cpu_us_per_op - self.user_us_per_op

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["ops_per_s"] = self.ops_per_s
        data["cpu_us_per_op"] = self.cpu_us_per_op
        data["user_us_per_op"] = self.user_us_per_op
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BenchResult:
        names = cls.__dataclass_fields__
        return cls(**{k: v for k, v in data.items() if k in names})


def window_result(
    name: str,
    conns: int,
    *,
    ops: int,
    duration: float,
    latency_us: Callable[[float], float],
    errors: dict[str, int],
    window: ServerWindow,
    unit: str = "msg",
    extra: dict[str, Any] | None = None,
) -> BenchResult:
    """One server's result over a measured window: its CPU between the process-tree
    samples of ``window`` (as it opened and as it closed), its RSS at the close, and the
    load's operations, latency percentiles and errors."""
    before, after = window.before, window.after
    return BenchResult(
        name=name,
        conns=conns,
        ops=ops,
        duration=duration,
        server_cpu_seconds=after.cpu_seconds - before.cpu_seconds,
        server_user_seconds=after.user_seconds - before.user_seconds,
        p50_us=latency_us(0.5),
        p99_us=latency_us(0.99),
        p999_us=latency_us(0.999),
        rss_bytes=after.rss_bytes,
        errors=errors,
        unit=unit,
        extra={} if extra is None else extra,
    )


class WindowLoad(Protocol):
    """What a load reports of its measured window (a ``TcpLoadResult``, wrk's, the
    WebSocket load's): the exchanges it counted, their rate's unit, the window's seconds,
    latency percentiles and errors."""

    RATE_UNIT: ClassVar[str]

    @property
    def count(self) -> int: ...
    @property
    def duration(self) -> float: ...
    @property
    def errors(self) -> dict[str, int]: ...
    def latency_us(self, q: float) -> float: ...


def load_window_result(
    name: str,
    conns: int,
    load: WindowLoad,
    window: ServerWindow,
    *,
    extra: dict[str, Any],
) -> BenchResult:
    """:func:`window_result` of a window driven by a load: its count (messages,
    requests) and their unit, duration, latency and errors."""
    return window_result(
        name,
        conns,
        ops=load.count,
        duration=load.duration,
        latency_us=load.latency_us,
        errors=load.errors,
        window=window,
        unit=load.RATE_UNIT.removesuffix("/s"),
        extra=extra,
    )


def ratio(result: BenchResult, results: Sequence[BenchResult], baseline: str) -> float | None:
    """``result``'s CPU per op over ``baseline``'s at the same conns (None if absent)."""
    for other in results:
        if other.name == baseline and other.conns == result.conns and other.ops:
            base = other.cpu_us_per_op
            return result.cpu_us_per_op / base if base > 0 else None
    return None


def median_rounds(results: Sequence[BenchResult]) -> list[BenchResult]:
    """Each server's median round (by CPU per op) at each connection count, for runs
    that repeat the comparison (``extra["round"]``: a shared machine moves one window's
    ratio by tenths)."""
    groups: dict[tuple[str, int], list[BenchResult]] = {}
    for r in results:
        groups.setdefault((r.name, r.conns), []).append(r)
    medians = []
    for rows in groups.values():
        rows = sorted(rows, key=lambda r: r.cpu_us_per_op)
        medians.append(rows[(len(rows) - 1) // 2])
    return medians


def round_ratios(
    results: Sequence[BenchResult], name: str, conns: int, baseline: str
) -> list[float]:
    """``name``'s CPU per op over ``baseline``'s, each divided within its own round."""
    ratios = []
    for r in results:
        if r.name == name and r.conns == conns:
            same_round = [o for o in results if o.extra.get("round") == r.extra.get("round")]
            value = ratio(r, same_round, baseline)
            if value is not None:
                ratios.append(value)
    return ratios


def of_workload(results: Sequence[BenchResult], workload: str) -> list[BenchResult]:
    """The rows of one workload (``extra["workload"]``)."""
    return [r for r in results if r.extra.get("workload") == workload]


def verdict_line(where: str, ratio_name: str, values: Sequence[float], target: float) -> str:
    """``WHERE: RATIO = MEDIAN (meets|MISSES the target <= TARGET)``: the median of the
    per-round ratios ``values``, each round's after it when there are several."""
    value = statistics.median(values)
    verdict = "meets" if value <= target else "MISSES"
    each = f" (rounds: {', '.join(f'{v:.2f}' for v in values)})" if len(values) > 1 else ""
    return f"{where}: {ratio_name} = {value:.2f} ({verdict} the target <= {target:.2f}){each}"


def ratio_target_lines(
    results: Sequence[BenchResult],
    targets: Mapping[str, float],
    *,
    where: str = "",
    label: str = "ioreactor",
) -> list[str]:
    """Per connection count and peer of ``targets`` (peer -> the highest CPU ratio
    allowed): ioreactor's ratio against its target (:func:`verdict_line`), ``label``
    naming it, ``where`` before the connection count."""
    lines = []
    for conns in dict.fromkeys(r.conns for r in results if r.name == "ioreactor"):
        for peer, target in targets.items():
            values = round_ratios(results, "ioreactor", conns, peer)
            if values:
                ratio_name = f"{label} / {peer}"
                lines.append(verdict_line(f"{where}{conns:,} conns", ratio_name, values, target))
    return lines


def workload_target_lines(
    results: Sequence[BenchResult],
    targets: Mapping[str, Mapping[str, float]],
    *,
    label: str = "ioreactor",
) -> list[str]:
    """:func:`ratio_target_lines` per workload of ``targets`` (workload -> peer -> the highest
    CPU ratio allowed)."""
    return [
        line
        for workload, peers in targets.items()
        for line in ratio_target_lines(
            of_workload(results, workload), peers, where=f"{workload}, ", label=label
        )
    ]


def _measured(value: float, form: str) -> str:
    """``value`` in ``form``, or a dash for NaN (not measured: wrk reports no p99.9)."""
    return "—" if math.isnan(value) else form.format(value)


def _cells(
    r: BenchResult, results: Sequence[BenchResult], baselines: Sequence[str], *, p999: bool
) -> list[str]:
    """A table row's cells: the run's numbers (p99.9 where ``p999``), then its ratio to
    each baseline (a dash where there is none)."""
    cells = [
        r.name,
        f"{r.conns:,}",
        f"{r.cpu_us_per_op:.2f}",
        _measured(r.user_us_per_op, "{:.2f}"),  # user mode; the rest is the kernel's
        f"{r.ops_per_s:,.0f}",
        f"{r.p50_us:,.0f}",
        f"{r.p99_us:,.0f}",
    ]
    if p999:
        cells.append(_measured(r.p999_us, "{:,.0f}"))
    cells.append(f"{r.rss_bytes / 2**20:.1f}")
    for name in baselines:
        value = ratio(r, results, name)
        cells.append("—" if value is None else f"{value:.2f}")
    return cells


def _errors_text(result: BenchResult) -> str:
    if not result.errors:
        return "0"
    return ", ".join(f"{kind} {n}" for kind, n in sorted(result.errors.items()))


def render_table(
    results: Sequence[BenchResult], baselines: Sequence[str], *, title: str = ""
) -> Table:
    """A rich table of ``results`` with a ratio column per name in ``baselines``."""
    from rich.table import Table

    unit = results[0].unit if results else "op"
    table = Table(title=title or None)
    table.add_column("server")
    table.add_column("conns", justify="right")
    table.add_column(f"CPU µs/{unit}", justify="right")
    table.add_column("user µs", justify="right")
    table.add_column(f"{unit}/s", justify="right")
    table.add_column("p50 µs", justify="right")
    table.add_column("p99 µs", justify="right")
    table.add_column("p99.9 µs", justify="right")
    table.add_column("RSS MiB", justify="right")
    for name in baselines:
        table.add_column(f"x {name}", justify="right")
    table.add_column("errors", justify="right")
    for r in results:
        table.add_row(*_cells(r, results, baselines, p999=True), _errors_text(r))
    return table


def markdown_table(results: Sequence[BenchResult], baselines: Sequence[str]) -> str:
    """The same table as GitHub markdown, for the README."""
    unit = results[0].unit if results else "op"
    head = ["server", "conns", f"CPU µs/{unit}", "user µs", f"{unit}/s", "p50 µs", "p99 µs"]
    head.append("RSS MiB")
    head += [f"x {name}" for name in baselines]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        lines.append("| " + " | ".join(_cells(r, results, baselines, p999=False)) + " |")
    return "\n".join(lines)


def print_table(
    results: Sequence[BenchResult],
    baselines: Sequence[str],
    *,
    title: str = "",
    console: Console | None = None,
) -> None:
    if console is None:
        from rich.console import Console

        console = Console()
    console.print(render_table(results, baselines, title=title))


def write_json(
    path: Path, results: Sequence[BenchResult], *, command: str, meta: dict[str, Any] | None = None
) -> Path:
    """Save ``results`` with the command that made them and the machine they ran on."""
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "command": command,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
        "meta": meta or {},
        "results": [r.to_dict() for r in results],
    }
    path.write_text(json.dumps(doc, indent=2) + "\n")
    return path


def read_json(path: Path) -> tuple[dict[str, Any], list[BenchResult]]:
    """The document written by :func:`write_json` and its results."""
    doc = json.loads(path.read_text())
    return doc, [BenchResult.from_dict(r) for r in doc["results"]]


def timestamped(prefix: str, suffix: str, directory: Path = RESULTS_DIR) -> Path:
    """``bench-results/PREFIX-YYYYmmdd-HHMMSS.SUFFIX``."""
    return directory / f"{prefix}-{time.strftime('%Y%m%d-%H%M%S')}.{suffix}"
