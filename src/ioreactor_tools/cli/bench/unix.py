"""`ioreactor bench unix`: Unix stream echo vs TCP loopback echo, server CPU per message.

The same echo server (``start_echo``, what ``ioreactor echo`` runs) and the same client
drive both transports in one run; only the socket family differs. A Unix stream skips
the TCP/IP stack (no segments, checksums, ACKs or loopback device), so the kernel part of
the server's CPU should shrink: the table splits user and system time to show where.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile

from ioreactor.cli.arguments import positive_count
from ioreactor_tools.bench.pinning import pin_current_process
from ioreactor_tools.bench.report import (
    print_table,
    ratio,
)
from ioreactor_tools.bench.udp_load import LoadConfig, free_address, measure_server, server_command
from ioreactor_tools.cli.bench._args import (
    add_out_option,
    add_poller_option,
    add_size_option,
    add_window_options,
    pinned_plan,
    save_results,
)
from ioreactor_tools.cli.console import report_console

#: Transports compared, the baseline first.
KINDS = ("tcp", "unix")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "unix",
        help="Unix stream echo vs TCP loopback echo: server CPU µs per message",
        description="Runs ioreactor's echo server on TCP loopback, then on a Unix socket, "
        "pinned to one core with the same ping-pong load on another, and prints server "
        "CPU µs per message for each and the Unix/TCP ratio.",
    )
    p.add_argument(
        "--conns", type=positive_count, default=100, help="connections (default %(default)s)"
    )
    add_size_option(p)
    add_window_options(p, duration=5.0, warmup=1.0)
    add_poller_option(p, help="load's backend")
    p.add_argument("--peers", action="store_true", help="also measure asyncio on both transports")
    add_out_option(p, "the JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    console = report_console()
    plan = pinned_plan(console)
    pin_current_process(plan.load)
    servers = ("ioreactor", "asyncio") if args.peers else ("ioreactor",)
    results = []
    with tempfile.TemporaryDirectory(prefix="ioreactor-bench-") as directory:
        for server in servers:
            for kind in KINDS:
                config = LoadConfig(
                    address=free_address(kind, directory),
                    conns=args.conns,
                    size=args.size,
                    duration=args.duration,
                    warmup=args.warmup,
                    poller=args.poller,
                )
                name = f"{server} {kind}"
                console.print(f"[dim]{name}: {config.address}, {args.duration:g} s ...[/]")
                argv = server_command(server, [config.address])
                results.append(measure_server(name, argv, config, plan.server))
    title = (
        f"stream echo, {args.size} B ping-pong, {args.conns} conns, {args.duration:g} s per "
        f"server (server on core {plan.server}, load on core {plan.load})"
    )
    print_table(results, [f"{servers[0]} tcp"], title=title, console=console)
    for server in servers:
        by_kind = {r.name.split()[1]: r for r in results if r.name.startswith(server + " ")}
        unix, tcp = by_kind["unix"], by_kind["tcp"]
        value = ratio(unix, results, tcp.name)
        if value is None:
            continue
        user = unix.user_us_per_op / tcp.user_us_per_op
        system = unix.system_us_per_op / tcp.system_us_per_op
        console.print(
            f"{server}: unix / tcp CPU per message = {value:.2f} (Unix is "
            f"{(1 - value) * 100:.0f}% cheaper; user {user:.2f}x, kernel {system:.2f}x)"
        )
    command = (
        f"ioreactor bench unix --conns {args.conns} --size {args.size} --duration "
        f"{args.duration:g} --warmup {args.warmup:g}" + (" --peers" if args.peers else "")
    )
    console.print(f"command: {command}")
    save_results(
        console, args.out, "unix-echo", results, command, {"cores": dataclasses.asdict(plan)}
    )
    return 0
