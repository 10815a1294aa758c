"""Benchmarks of the multi-core models, side by side in one run.

``ioreactor bench multicore [threads] [dispatch] [c20k]``

threads   one process: one loop, then a main loop that only accepts plus 1 and 2
          sub-loop threads. On CPython the threads take turns on the GIL; the target is
          that they cost at most 10 % more server CPU per message than one loop.
dispatch  one worker process behind its own SO_REUSEPORT listener, then behind a
          supervisor that accepts and passes the fds; target: fdpass <= 1.15 x the CPU
          per message of reuseport (the hand-off must be cheap).
c20k      20,000 concurrent echo connections on ``--workers 2`` (no process may hold
          them all: the fd limit here is 20,000 per process), every message checked;
          target: zero errors. Reports server RSS per connection.

The server's whole process tree (supervisor and workers) is charged: CPU time read from
/proc right before and after the measured window, the server pinned to one core and the
load to the other (as ``ioreactor bench echo`` does; its machinery is reused here).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

from ioreactor.cli.arguments import one_of, positive_count, seconds
from ioreactor.multicore.config import DISPATCHES
from ioreactor.testing import free_port
from ioreactor_tools.bench.echo_bench import EchoBenchConfig, measure_echo_server
from ioreactor_tools.bench.echo_load import EchoLoadConfig, run_echo_load
from ioreactor_tools.bench.pinning import WARMUP, ServerProcess, core_plan, pin_current_process
from ioreactor_tools.bench.procstat import TreeSample
from ioreactor_tools.bench.report import BenchResult
from ioreactor_tools.bench.tcp_load import load_processes

#: Connections for the CPU-per-message comparisons.
#: What the benchmark measures, each part on its own.
PARTS = ("threads", "dispatch", "c20k")
CONNS = 100
#: Measured seconds per server (short: the machine is shared).
DURATION = 5.0
#: Connections and load processes of the C20K run.
C20K_CONNS = 20_000
C20K_LOAD_PROCS = 2
#: Seconds between the server accepting and the idle memory sample.
SETTLE = 1.0
#: Targets: CPU per message relative to the first server of each comparison, at most.
THREADS_TARGET = 1.10
DISPATCH_TARGET = 1.15


def echo_command(port: int, *flags: str) -> list[str]:
    return [sys.executable, "-m", "ioreactor", "echo", "--listen", f"127.0.0.1:{port}", *flags]


THREADS: dict[str, tuple[str, ...]] = {
    "1 loop": ("--workers", "0"),
    "main + 1 sub-loop": ("--workers", "0", "--loops", "1"),
    "main + 2 sub-loops": ("--workers", "0", "--loops", "2"),
}
DISPATCH: dict[str, tuple[str, ...]] = {
    "reuseport, 1 worker": ("--workers", "1", "--dispatch", "reuseport"),
    "fdpass, 1 worker": ("--workers", "1", "--dispatch", "fdpass"),
}


@dataclass(frozen=True)
class Row:
    name: str
    result: BenchResult


def compare(servers: dict[str, tuple[str, ...]], config: EchoBenchConfig, rounds: int) -> list[Row]:
    """Each server in turn, ``rounds`` times interleaved (noise hits them alike)."""
    plan = core_plan()
    pin_current_process(plan.load)
    rows = []
    for _ in range(rounds):
        for name, flags in servers.items():
            port = free_port()
            command = echo_command(port, *flags)
            result = measure_echo_server(name, command, port, config.conns[0], config, plan)
            rows.append(Row(name, result))
    return rows


def print_comparison(title: str, rows: list[Row], target: float) -> None:
    base_name = rows[0].name
    by_name: dict[str, list[Row]] = {}
    for row in rows:
        by_name.setdefault(row.name, []).append(row)
    base = _mean([r.result.cpu_us_per_op for r in by_name[base_name]])
    print(f"\n{title} ({rows[0].result.conns} conns, target <= {target:.2f} x {base_name})")
    print(f"{'server':<22} {'CPU us/msg':>10} {'ratio':>6} {'msg/s':>9} {'p50 us':>7} "
          f"{'p99 us':>7} {'RSS MiB':>8} {'errors':>6}")  # fmt: skip
    for name, group in by_name.items():
        cpu = _mean([g.result.cpu_us_per_op for g in group])
        r = group[-1].result
        msgs = _mean([g.result.ops_per_s for g in group])
        verdict = "" if name == base_name else ("  ok" if cpu / base <= target else "  OVER")
        errors = sum(g.result.error_count for g in group)
        print(
            f"{name:<22} {cpu:>10.2f} {cpu / base:>6.2f} {msgs:>9,.0f} {r.p50_us:>7.0f} "
            f"{r.p99_us:>7.0f} {r.rss_bytes / 2**20:>8.1f} {errors:>6}{verdict}"
        )


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def c20k(flags: Sequence[str], conns: int, duration: float) -> None:
    """Hold ``conns`` echo connections on a multi-worker server; RSS per connection."""
    os.sched_setaffinity(0, os.sched_getaffinity(0) | set(range(os.cpu_count() or 1)))
    port = free_port()
    command = echo_command(port, *flags)
    samples: dict[str, TreeSample] = {}
    with ServerProcess(command, port=port, core=None) as server:
        time.sleep(SETTLE)  # fdpass accepts before its workers are up: let them start
        samples["idle"] = server.sample()
        load = run_echo_load(
            EchoLoadConfig(
                host="127.0.0.1",
                port=port,
                conns=conns,
                duration=duration,
                warmup=1.0,  # every connection has echoed before the window and the sample
                procs=max(C20K_LOAD_PROCS, load_processes(conns)),
            ),
            on_end=lambda: samples.__setitem__("held", server.sample()),
        )
    idle, held = samples["idle"], samples["held"]
    per_conn = (held.rss_bytes - idle.rss_bytes) / max(1, load.connected)
    print(f"\nC{conns // 1000}K: {' '.join(command[2:])}")
    print(
        f"connected {load.connected:,}/{conns:,}, {load.messages:,} messages in "
        f"{load.duration:.1f} s ({load.messages / load.duration:,.0f}/s), "
        f"errors {load.error_count}, p99 {load.latency_us(0.99) / 1000:.1f} ms"
    )
    print(
        f"server: {len(held.pids)} processes, {held.fds:,} fds, RSS {idle.rss_bytes / 2**20:.1f}"
        f" -> {held.rss_bytes / 2**20:.1f} MiB = {per_conn / 1024:.2f} KiB per connection"
    )
    print("target: zero errors, all connected:", "ok" if not load.error_count
          and load.connected == conns else "FAILED")  # fmt: skip


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "parts", nargs="*", type=one_of(PARTS, "part"), default=list(PARTS), help=", ".join(PARTS)
    )
    parser.add_argument("--conns", type=positive_count, default=CONNS)
    parser.add_argument("--duration", type=seconds, default=DURATION)
    parser.add_argument("--rounds", type=positive_count, default=1, help="interleaved repeats")
    parser.add_argument("--c20k-conns", type=positive_count, default=C20K_CONNS)
    parser.add_argument("--c20k-dispatch", choices=DISPATCHES, default="reuseport")


def run(args: argparse.Namespace) -> int:
    config = EchoBenchConfig(conns=(args.conns,), duration=args.duration, warmup=WARMUP)
    if "c20k" in args.parts:
        flags = ("--workers", "2", "--dispatch", args.c20k_dispatch, "--backlog", "4096")
        c20k(flags, args.c20k_conns, args.duration)
    if "threads" in args.parts:
        rows = compare(THREADS, config, args.rounds)
        print_comparison("sub-reactor threads vs one loop", rows, THREADS_TARGET)
    if "dispatch" in args.parts:
        rows = compare(DISPATCH, config, args.rounds)
        print_comparison("fd passing vs SO_REUSEPORT", rows, DISPATCH_TARGET)
    return 0
