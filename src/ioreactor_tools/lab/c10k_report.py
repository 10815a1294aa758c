"""What the C10K lab concludes, and its outputs: findings, a PNG plot, Markdown, JSON.

The findings compare the run with the course's predictions (性能篇_下 "C10K 解决方案"):
a fixed pool serves only as many long-lived connections as it has threads, select stops
at FD_SETSIZE, per-connection processes and threads cost more CPU and memory per
connection than a reactor, and the epoll reactors serve every level this machine allows.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import platform
import resource
import time
from collections.abc import Sequence
from pathlib import Path

from ioreactor_tools.lab.c10k import C10kConfig, Step
from ioreactor_tools.lab.report import Finding, LabReport, Table

MIB = 1 << 20
FD_SETSIZE = 1024
BLOCKING = ("process-per-connection", "thread-per-connection")
EPOLL_REACTORS = ("reactor-epoll", "main-sub")


def _steps_of(steps: Sequence[Step], model: str) -> list[Step]:
    return [s for s in steps if s.model == model]


def _largest_ok(steps: Sequence[Step], model: str) -> int:
    return max((s.conns for s in _steps_of(steps, model) if s.ok), default=0)


def _first_failure(steps: Sequence[Step], model: str) -> Step | None:
    return next((s for s in _steps_of(steps, model) if not s.ok), None)


def _at(steps: Sequence[Step], model: str, conns: int) -> Step | None:
    return next((s for s in steps if s.model == model and s.conns == conns and s.ok), None)


def findings(steps: Sequence[Step], config: C10kConfig) -> LabReport:
    rep = LabReport("C10K: the course's server models side by side", "性能篇_下 C10K 解决方案")
    models = list(dict.fromkeys(s.model for s in steps))
    if "thread-pool" in models:
        failed = _first_failure(steps, "thread-pool")
        over = [level for level in config.levels if level > config.pool_workers]
        rep.findings.append(
            Finding(
                f"thread pool of {config.pool_workers} workers, long-lived connections",
                f"served up to {_largest_ok(steps, 'thread-pool'):,}; "
                + (f"at {failed.conns:,}: {failed.reason}" if failed else "never failed"),
                "a worker is held for a connection's whole life: connections beyond the pool "
                "wait unanswered (线程池 suits short connections)",
                (failed is not None and failed.conns == over[0] and "unanswered" in failed.errors)
                if over
                else None,
            )
        )
    if "reactor-select" in models:
        failed = _first_failure(steps, "reactor-select")
        # the server needs a few descriptors of its own besides its connections
        beyond = [level for level in config.levels if level > FD_SETSIZE - 16]
        rep.findings.append(
            Finding(
                "one reactor on select",
                f"served up to {_largest_ok(steps, 'reactor-select'):,}; "
                + (f"at {failed.conns:,}: {failed.reason}" if failed else "never failed"),
                "select cannot watch descriptors >= FD_SETSIZE (1024)",
                failed is not None and failed.conns == beyond[0] if beyond else None,
            )
        )
    for model in EPOLL_REACTORS:
        if model in models:
            failed = _first_failure(steps, model)
            limit = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
            reachable = [level for level in config.levels if level < limit - 64]
            rep.findings.append(
                Finding(
                    f"{model}",
                    f"served up to {_largest_ok(steps, model):,}"
                    + (f"; at {failed.conns:,}: {failed.reason}" if failed else ""),
                    "epoll scales to C10K: every level the per-process descriptor limit "
                    f"({limit:,}) allows",
                    _largest_ok(steps, model) >= max(reachable, default=0),
                )
            )
    rep.findings.extend(_cost_findings(steps, models))
    for s in steps:
        if s.status == "stopped":
            rep.notes.append(f"{s.model} at {s.conns:,} was not run: {s.reason}.")
        elif s.status == "failed":
            rep.notes.append(f"{s.model} failed at {s.conns:,}: {s.reason}")
    rep.notes.append(
        "One core serves, the other runs the load, on a shared machine: compare models "
        "within this run, not against other runs."
    )
    return rep


def memory_per_conn(steps: Sequence[Step], model: str, level: int) -> float:
    """Bytes per connection at ``level``: the slope between the model's last two levels
    (the baseline of an idle server cancels out), or the average with only one."""
    done = sorted(
        (s for s in _steps_of(steps, model) if s.ok and s.conns <= level), key=lambda s: s.conns
    )
    if len(done) >= 2:
        a, b = done[-2], done[-1]
        return (b.memory_bytes - a.memory_bytes) / (b.conns - a.conns)
    return done[-1].memory_bytes / done[-1].conns if done else 0.0


def _cost_findings(steps: Sequence[Step], models: list[str]) -> list[Finding]:
    """CPU and memory per connection, at the largest level every compared model served."""
    out: list[Finding] = []
    reactor = next((m for m in EPOLL_REACTORS if m in models), None)
    blocking = [m for m in BLOCKING if m in models]
    if reactor is None or not blocking:
        return out
    for model in blocking:
        common = [
            c
            for c in sorted({s.conns for s in steps})
            if _at(steps, model, c) and _at(steps, reactor, c)
        ]
        if not common:
            continue
        level = common[-1]
        b, r = _at(steps, model, level), _at(steps, reactor, level)
        assert b is not None and r is not None
        b_mem, r_mem = memory_per_conn(steps, model, level), memory_per_conn(steps, reactor, level)
        out.append(
            Finding(
                f"{model} vs {reactor} at {level:,} connections",
                f"CPU {_us(b.cpu_us_per_msg)} vs {_us(r.cpu_us_per_msg)} per message; "
                f"{b_mem / 1024:,.1f} vs {r_mem / 1024:,.1f} KiB more memory per connection",
                "a process or thread per connection pays for scheduling and stacks; the "
                "reactor serves every connection from one thread",
                b.cpu_us_per_msg is not None
                and r.cpu_us_per_msg is not None
                and b.cpu_us_per_msg > r.cpu_us_per_msg
                and b_mem > r_mem,
            )
        )
    return out


def _us(value: float | None) -> str:
    return f"{value:.1f} µs" if value is not None else "n/a"


COLUMNS = (
    "model",
    "conns",
    "status",
    "msg/s",
    "p50 ms",
    "p99 ms",
    "CPU µs/msg",
    "memory MiB",
    "procs/threads",
    "why it failed",
)


def step_rows(steps: Sequence[Step]) -> tuple[tuple[str, ...], ...]:
    rows = []
    for s in steps:
        measured = s.ok or s.messages
        rows.append(
            (
                s.model,
                f"{s.conns:,}",
                s.status,
                f"{s.msg_per_s:,.0f}" if measured else "",
                f"{s.p50_us / 1000:,.1f}" if measured else "",
                f"{s.p99_us / 1000:,.1f}" if measured else "",
                f"{s.cpu_us_per_msg:.1f}" if s.cpu_us_per_msg is not None else "",
                f"{s.memory_bytes / MIB:,.0f}" if s.ok else "",
                f"{s.processes:,}/{s.threads:,}" if s.processes else "",
                s.reason,
            )
        )
    return tuple(rows)


def steps_table(steps: Sequence[Step]) -> Table:
    """The console's table: every column but the reason (too wide for a terminal; the
    report's notes and report.md carry it)."""
    return Table("every step", COLUMNS[:-1], tuple(row[:-1] for row in step_rows(steps)))


def machine_facts() -> dict[str, str]:
    """The facts a reader needs to weigh the figures."""
    uname = platform.uname()
    cpu = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem_kib = int(f.readline().split()[1])

    def sysctl(name: str) -> str:
        try:
            with open(f"/proc/sys/{name.replace('.', '/')}") as f:
                return " ".join(f.read().split())
        except OSError:
            return "n/a"

    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "kernel": f"{uname.system} {uname.release}",
        "cpu": f"{cpu}, {os.cpu_count()} logical CPUs, usable {sorted(os.sched_getaffinity(0))}",
        "memory": f"{mem_kib / 2**20:.1f} GiB",
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "open files (soft/hard)": "/".join(map(str, resource.getrlimit(resource.RLIMIT_NOFILE))),
        "net.core.somaxconn": sysctl("net.core.somaxconn"),
        "net.ipv4.ip_local_port_range": sysctl("net.ipv4.ip_local_port_range"),
        "kernel.pid_max": sysctl("kernel.pid_max"),
    }


def plot(steps: Sequence[Step], path: Path) -> Path | None:
    """Throughput, p99 latency, CPU per message and memory against connections, one line
    per model (successful steps; an x marks where a model failed). None without
    matplotlib (an optional dependency)."""
    if importlib.util.find_spec("matplotlib") is None or not steps:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = (
        ("msg_per_s", "messages/s (higher is better)", 1.0),
        ("p99_us", "p99 latency ms (lower is better)", 1e-3),
        ("cpu_us_per_msg", "server CPU µs per message (lower is better)", 1.0),
        ("memory_bytes", "server private memory MiB", 1 / MIB),
    )
    fig, axes = plt.subplots(2, 2, figsize=(12, 8))
    for ax, (attr, label, scale) in zip(axes.flat, panels, strict=True):
        for model in dict.fromkeys(s.model for s in steps):
            ok = [s for s in steps if s.model == model and s.ok and getattr(s, attr)]
            (line,) = ax.plot(
                [s.conns for s in ok],
                [getattr(s, attr) * scale for s in ok],
                marker="o",
                label=model,
            )
            failed = _first_failure(steps, model)
            if failed is not None and ok:
                ax.plot(
                    [failed.conns],
                    [getattr(ok[-1], attr) * scale],
                    marker="x",
                    markersize=10,
                    color=line.get_color(),
                    linestyle="none",
                )
        ax.set_xscale("log")
        if attr != "msg_per_s":
            ax.set_yscale("log")
        ax.set_xlabel("connections")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
    axes.flat[0].legend(fontsize=8)
    fig.suptitle(
        "C10K: the course's server models (x: the level where a model failed or was stopped)"
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def markdown(
    steps: Sequence[Step],
    report: LabReport,
    facts: dict[str, str],
    config: C10kConfig,
    png: Path | None,
) -> str:
    lines = ["# C10K lab report", "", "## Machine", ""]
    lines += [f"- **{k}**: {v}" for k, v in facts.items()]
    lines += [
        "",
        "## Run",
        "",
        f"- levels {', '.join(f'{c:,}' for c in config.levels)}; {config.duration:g} s "
        f"measured per step after {config.warmup:g} s warm-up; {config.size} B echo "
        f"messages; thread pool {config.pool_workers}, main-sub "
        f"{config.sub_reactors} sub-reactors",
        "",
    ]
    if png is not None:
        lines += [f"![C10K plot]({png.name})", ""]
    lines += [
        "## Findings",
        "",
        "| step | observed | the course says | as predicted? |",
        "|---|---|---|---|",
    ]
    verdict = {True: "yes", False: "**NO**", None: "n/a"}
    lines += [
        f"| {f.step} | {_cell(f.observed)} | {f.course} | {verdict[f.matches]} |"
        for f in report.findings
    ]
    lines += [
        "",
        "## Every step",
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
    ]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in step_rows(steps)]
    if report.notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in report.notes]
    return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def write_outputs(
    steps: Sequence[Step], report: LabReport, config: C10kConfig, directory: Path
) -> dict[str, Path]:
    """``c10k.png`` (when matplotlib is there), ``report.md`` and ``results.json``."""
    directory.mkdir(parents=True, exist_ok=True)
    facts = machine_facts()
    paths = {}
    png = plot(steps, directory / "c10k.png")
    if png is not None:
        paths["plot"] = png
    paths["report"] = directory / "report.md"
    paths["report"].write_text(markdown(steps, report, facts, config, png))
    paths["json"] = directory / "results.json"
    paths["json"].write_text(
        json.dumps(
            {
                "machine": facts,
                "config": dataclasses.asdict(config),
                "steps": [dataclasses.asdict(s) for s in steps],
            },
            indent=2,
        )
        + "\n"
    )
    return paths
