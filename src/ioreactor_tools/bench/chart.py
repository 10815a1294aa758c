"""PNG charts of benchmark results (matplotlib): :func:`bar_chart`, one metric per server
grouped by connection count; :func:`line_plot`, req/s and CPU per request against
connections, one line per server (``bench http``).

matplotlib is an optional dependency (``ioreactor[bench]``): each chart returns None when
it is missing, and the bench commands print the table either way.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ioreactor_tools.bench.report import BenchResult

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: The metrics a chart can show: attribute of BenchResult -> axis label template.
METRICS = {
    "cpu_us_per_op": "server CPU µs per {unit} (lower is better)",
    "ops_per_s": "{unit}/s (higher is better)",
    "p99_us": "p99 latency µs (lower is better)",
}


def bar_chart(
    results: Sequence[BenchResult],
    path: Path,
    *,
    metric: str = "cpu_us_per_op",
    title: str = "",
) -> Path | None:
    """Draw ``metric`` for each server, grouped by conns; None without matplotlib."""
    if not _matplotlib_ready(results):
        return None
    import matplotlib.pyplot as plt

    servers = list(dict.fromkeys(r.name for r in results))
    conns = sorted({r.conns for r in results})
    width = 0.8 / len(servers)
    fig, ax = plt.subplots(figsize=(max(8.0, 1.2 * len(conns) * len(servers)), 4.5))
    for i, server in enumerate(servers):
        xs, ys = [], []
        for j, c in enumerate(conns):
            for r in results:
                if r.name == server and r.conns == c:
                    xs.append(j + (i - (len(servers) - 1) / 2) * width)
                    ys.append(float(getattr(r, metric)))
        bars = ax.bar(xs, ys, width, label=server)
        ax.bar_label(bars, fmt="%.2f" if metric == "cpu_us_per_op" else "%.0f", fontsize=7)
    ax.set_xticks(range(len(conns)), [f"{c:,} conns" for c in conns])
    ax.set_ylabel(METRICS.get(metric, metric).format(unit=results[0].unit))
    if title:
        ax.set_title(title, fontsize=9)
    ax.legend()
    return _save(fig, path)


def line_plot(results: Sequence[BenchResult], path: Path, title: str) -> Path | None:
    """req/s and CPU µs/req against connections, one line per server; None without
    matplotlib."""
    if not _matplotlib_ready(results):
        return None
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, (rate_ax, cpu_ax) = plt.subplots(1, 2, figsize=(11, 4.5))
    for server in dict.fromkeys(r.name for r in results):
        rows = sorted((r for r in results if r.name == server), key=lambda r: r.conns)
        xs = [r.conns for r in rows]
        rate_ax.plot(xs, [r.ops_per_s for r in rows], marker="o", label=server)
        cpu_ax.plot(xs, [r.cpu_us_per_op for r in rows], marker="o", label=server)
    for ax, label in (
        (rate_ax, "requests/s (higher is better)"),
        (cpu_ax, "server CPU µs per request (lower is better)"),
    ):
        ax.set_xscale("log")
        ax.set_xlabel("connections")
        ax.set_ylabel(label)
        ax.set_xticks(sorted({r.conns for r in results}))
        ax.get_xaxis().set_major_formatter(
            matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:,.0f}")
        )
        ax.grid(True, alpha=0.3)
        ax.legend()
    cpu_ax.set_ylim(bottom=0)
    rate_ax.set_ylim(bottom=0)
    fig.suptitle(title, fontsize=9)
    return _save(fig, path)


def _matplotlib_ready(results: Sequence[BenchResult]) -> bool:
    """True, with matplotlib on its file-only backend, when there is matplotlib and
    something to draw."""
    if importlib.util.find_spec("matplotlib") is None or not results:
        return False
    import matplotlib

    matplotlib.use("Agg")
    return True


def _save(fig: Figure, path: Path) -> Path:
    """Lay ``fig`` out, write it to ``path`` (its directory made) and free it."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
