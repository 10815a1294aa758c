"""`ioreactor bench udp`: datagram echo server CPU per datagram, ioreactor vs asyncio."""

from __future__ import annotations

import argparse
import dataclasses
import tempfile

from ioreactor.cli.arguments import names_from, positive_count
from ioreactor_tools.bench.pinning import pin_current_process
from ioreactor_tools.bench.report import print_table, ratio
from ioreactor_tools.bench.udp_load import (
    SERVERS,
    LoadConfig,
    free_address,
    measure_server,
    server_command,
)
from ioreactor_tools.cli.bench._args import (
    add_out_option,
    add_poller_option,
    add_size_option,
    add_window_options,
    config_from_args,
    peers_in,
    pinned_plan,
    save_results,
)
from ioreactor_tools.cli.console import report_console

#: The issue's target: ioreactor's CPU per datagram over the asyncio peer's, at most.
TARGET = 1.0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "udp",
        help="UDP echo: ioreactor vs a minimal asyncio DatagramProtocol, CPU µs per datagram",
        description="Runs each datagram echo server pinned to one core with the load on "
        "another, reads the server's CPU time from /proc around a fixed window and prints "
        "CPU µs per datagram, datagrams/s, latency and RSS with the ratio to asyncio.",
    )
    p.add_argument("--kind", choices=("udp", "unix-dgram"), default="udp")
    p.add_argument(
        "--flows", type=positive_count, default=64, help="client sockets (default %(default)s)"
    )
    p.add_argument(
        "--inflight", type=positive_count, default=1, help="datagrams in flight per flow"
    )
    add_size_option(p, 512, "datagram")
    add_window_options(p, duration=5.0, warmup=1.0)
    add_poller_option(p, help="load's backend")
    p.add_argument(
        "--servers", type=names_from(SERVERS, "server"), default=("ioreactor", "asyncio", "uvloop")
    )
    add_out_option(p, "the JSON")
    p.set_defaults(func=run)


def reproduce_command(args: argparse.Namespace) -> str:
    return (
        f"ioreactor bench udp --kind {args.kind} --flows {args.flows} --inflight "
        f"{args.inflight} --size {args.size} --duration {args.duration:g} --warmup "
        f"{args.warmup:g} --servers {','.join(args.servers)}"
    )


def run(args: argparse.Namespace) -> int:
    console = report_console()
    plan = pinned_plan(console)
    pin_current_process(plan.load)
    results = []
    with tempfile.TemporaryDirectory(prefix="ioreactor-bench-") as directory:
        for name in args.servers:
            address = free_address(args.kind, directory)
            config = config_from_args(LoadConfig, args, address=address, conns=args.flows)
            console.print(f"[dim]{name}: {config.address}, {args.duration:g} s ...[/]")
            command = server_command(name, [config.address])
            results.append(measure_server(name, command, config, plan.server))
    baselines = peers_in(results)
    title = (
        f"{args.kind} echo, {args.size} B datagrams, {args.flows} flows x {args.inflight} in "
        f"flight, {args.duration:g} s per server (server on core {plan.server}, load on "
        f"core {plan.load})"
    )
    print_table(results, baselines, title=title, console=console)
    for r in results:
        value = ratio(r, results, "asyncio") if r.name == "ioreactor" else None
        if value is not None:
            verdict = "meets" if value <= TARGET else "MISSES"
            console.print(f"ioreactor / asyncio = {value:.2f} ({verdict} the target <= {TARGET})")
    command_line = reproduce_command(args)
    console.print(f"command: {command_line}")
    save_results(
        console,
        args.out,
        f"{args.kind}-echo",
        results,
        command_line,
        {"cores": dataclasses.asdict(plan)},
    )
    return 0
