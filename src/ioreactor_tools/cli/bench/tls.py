"""`ioreactor bench tls`: TLS against uvloop (asyncio's ``ssl=``) and nginx.

Three workloads (:mod:`ioreactor_tools.bench.tls_bench`): HTTPS keep-alive ``GET /``
(wrk), new full TLS 1.3 handshakes (``openssl s_time -new``), and bulk through a TLS
echo. Each server runs alone, pinned to the server core, the load on the other; the
table gives server CPU per request / handshake / MiB, and the targets of issue 18 are
judged by the median of the per-round ratios (``--rounds``).
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from ioreactor.cli.arguments import (
    names_from,
    positive_count,
)
from ioreactor_tools.cli.bench._args import (
    add_conns_option,
    add_out_option,
    add_poller_option,
    add_rounds_option,
    add_window_options,
    config_from_args,
    exit_status,
    peers_in,
    pinned_plan,
    report_run,
    rerun_command,
    rounds_note,
)
from ioreactor_tools.cli.console import report_console

if TYPE_CHECKING:
    from ioreactor_tools.bench.tls_bench import TlsBenchConfig

_WORKLOADS = ("keepalive", "handshake", "bulk")
_SERVERS = ("ioreactor", "uvloop", "nginx")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "tls",
        help="TLS: HTTPS keep-alive, new handshakes and bulk vs uvloop and nginx",
        description="Runs each TLS server pinned to one core with the load on another "
        "(wrk, openssl s_time, a uvloop TLS client), reads the server's CPU time from "
        "/proc around each window, and prints CPU per request / handshake / MiB with the "
        "ratio to each peer; writes JSON.",
    )
    p.add_argument(
        "--workloads",
        type=names_from(_WORKLOADS, "workload"),
        default=_WORKLOADS,
        help="comma-separated: keepalive, handshake, bulk (default: all)",
    )
    add_conns_option(p, "keep-alive connections (100,1000)")
    p.add_argument(
        "--handshake-clients",
        type=positive_count,
        default=4,
        help="openssl s_time processes at once (default 4)",
    )
    p.add_argument(
        "--bulk-mib", type=positive_count, default=1024, help="MiB through the echo (1024)"
    )
    add_window_options(p, duration=5.0, warmup=1.0)
    add_rounds_option(p, "repeat the whole cycle (default 1)")
    p.add_argument(
        "--servers",
        type=names_from(_SERVERS),
        default=_SERVERS,
        help="comma-separated: ioreactor, uvloop, nginx",
    )
    add_poller_option(p, "ioreactor's backend")
    add_out_option(p, "the JSON")
    p.set_defaults(func=run)


def reproduce_command(config: TlsBenchConfig) -> str:
    options = [
        f"--workloads {','.join(config.workloads)}",
        f"--handshake-clients {config.handshake_clients}",
        f"--bulk-mib {config.bulk_mib}",
    ]
    if config.servers != _SERVERS:
        options.append(f"--servers {','.join(config.servers)}")
    if config.poller:
        options.append(f"--poller {config.poller}")
    return rerun_command("tls", config, *options)


def run(args: argparse.Namespace) -> int:
    import shutil

    from ioreactor_tools.bench.report import median_rounds, print_table
    from ioreactor_tools.bench.tls_bench import TARGETS, TlsBenchConfig, run_tls_bench, target_lines
    from ioreactor_tools.bench.tls_peers import make_certificate

    if (
        args.duration <= 0
        or args.warmup < 0
        or args.rounds < 1
        or args.bulk_mib < 1
        or args.handshake_clients < 1
    ):
        raise SystemExit(
            "ioreactor bench tls: --duration > 0, --warmup >= 0, --rounds, --bulk-mib and "
            "--handshake-clients >= 1"
        )
    console = report_console()
    plan = pinned_plan(console)
    config = config_from_args(TlsBenchConfig, args)
    cert = make_certificate()
    try:
        results = run_tls_bench(config, console=console, cert=cert)
    finally:
        shutil.rmtree(cert.directory, ignore_errors=True)
    rounds = rounds_note(config.rounds)
    for workload in config.workloads:
        rows = [r for r in results if r.extra.get("workload") == workload]
        if not rows:
            continue
        shown = median_rounds(rows) if config.rounds > 1 else rows
        baselines = peers_in(rows, ("uvloop", "nginx"))
        baselines.sort(key=lambda n: n != TARGETS[workload][0])
        title = (
            f"TLS {workload}: server CPU per {rows[0].unit}, {config.duration:g} s per server"
            f"{rounds} (server on core {plan.server}, load on core {plan.load})"
        )
        print_table(shown, baselines, title=title, console=console)
    report_run(
        console,
        args.out,
        "tls",
        results,
        verdicts=target_lines(results),
        command=reproduce_command(config),
        config=config,
        plan=plan,
    )
    return exit_status(results)
