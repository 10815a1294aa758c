"""`ioreactor bench uring`: epoll, io_uring readiness and io_uring completion side by side
(the engine: :mod:`ioreactor_tools.bench.uring_bench`).

Prints each round's table and the ratios to epoll from the same round (``--rounds``
repeats the comparison: the machine is noisy, read the median), with ``--idle N`` the
memory per idle connection, then the target and the command that reruns it; writes JSON.
``--serve WORKLOAD --backend B --listen H:P`` (hidden) is the server the benchmark starts.
"""

from __future__ import annotations

import argparse
import dataclasses

from ioreactor.cli.arguments import (
    count,
    names_from,
    tcp_listen_address,
)
from ioreactor_tools.bench.pinning import WARMUP
from ioreactor_tools.bench.uring_bench import (
    BACKENDS,
    BASELINE,
    TARGET,
    WORKLOADS,
    UringBenchConfig,
    idle_table,
    measure_idle,
    run_uring_bench,
    serve,
)
from ioreactor_tools.cli.bench._args import (
    add_conns_option,
    add_out_option,
    add_rounds_option,
    add_size_option,
    add_window_options,
    config_from_args,
    exit_status,
    pinned_plan,
    rerun_command,
    save_results,
)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "uring",
        help="TCP echo on epoll vs io_uring readiness vs io_uring completion (CPU µs/msg)",
        description="Runs the echo server on each backend pinned to one core with the load "
        "on another, reads its CPU time from /proc around a fixed window, and prints CPU "
        "µs per message, messages/s, latency and RSS with the ratio to epoll.",
    )
    add_conns_option(p)
    add_size_option(p)
    add_window_options(p, duration=3.0, warmup=WARMUP, per="backend")
    add_rounds_option(p, "repeat the whole comparison N times")
    p.add_argument(
        "--backends",
        type=names_from(BACKENDS, "backend"),
        default=BACKENDS,
        help="comma-separated, epoll first",
    )
    p.add_argument("--idle", type=count, default=0, help="also measure N idle connections")
    add_out_option(p, "the JSON")
    p.add_argument(
        "--workloads",
        type=names_from(WORKLOADS, "workload"),
        default=("echo",),
        help="echo, http or echo,http",
    )
    p.add_argument("--serve", choices=WORKLOADS, help=argparse.SUPPRESS)
    p.add_argument("--backend", choices=BACKENDS, default=BASELINE, help=argparse.SUPPRESS)
    p.add_argument(
        "--listen", type=tcp_listen_address, default="127.0.0.1:0", help=argparse.SUPPRESS
    )
    p.set_defaults(func=run)


def reproduce_command(config: UringBenchConfig) -> str:
    """The command line that reruns this benchmark."""
    options = [f"--size {config.size}"]
    if config.backends != BACKENDS:
        options.append(f"--backends {','.join(config.backends)}")
    if config.workloads != ("echo",):
        options.append(f"--workloads {','.join(config.workloads)}")
    if config.idle:
        options.append(f"--idle {config.idle}")
    return rerun_command("uring", config, *options)


def run(args: argparse.Namespace) -> int:
    if args.serve:
        return serve(args.serve, args.backend, args.listen)
    from ioreactor_tools.cli.console import report_console

    config = config_from_args(UringBenchConfig, args)
    console = report_console()
    plan = pinned_plan(console)
    results = run_uring_bench(config, plan, console=console)
    idle = [measure_idle(b, config.idle) for b in config.backends] if config.idle else []
    if idle:
        console.print(idle_table(idle))
    command = reproduce_command(config)
    console.print(f"target: uring <= {TARGET:.2f} x epoll; command: {command}")
    save_results(
        console,
        args.out,
        "uring",
        results,
        command,
        {"cores": dataclasses.asdict(plan), "idle": [dataclasses.asdict(m) for m in idle]},
    )
    return exit_status(results)
