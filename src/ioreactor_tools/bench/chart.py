"""A PNG bar chart of one metric per server, grouped by connection count (matplotlib).

matplotlib is an optional dependency (``ioreactor[bench]``): :func:`bar_chart` returns
None when it is missing, and the bench commands print the table either way.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path

from ioreactor_tools.bench.report import BenchResult

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
    if importlib.util.find_spec("matplotlib") is None or not results:
        return None
    import matplotlib

    matplotlib.use("Agg")
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
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
