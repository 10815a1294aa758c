"""`ioreactor echo-client`: the echo load generator (ping-pong, every byte checked)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from ioreactor.cli.arguments import (
    CommandError,
    connect_address,
    count,
    positive_count,
    seconds,
    seconds_or_zero,
)
from ioreactor_tools.bench.echo_load import (
    CONNECT_TIMEOUT,
    RAMP_BATCH,
    EchoLoadConfig,
    EchoLoadResult,
    run_echo_load,
)
from ioreactor_tools.cli.bench._args import add_poller_option, config_from_args

if TYPE_CHECKING:
    from rich.console import Console


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "echo-client",
        help="echo load generator: ping-pong messages, every byte checked",
        description="Each connection sends SIZE random bytes, checks the echo byte for byte, "
        "and sends the next message; prints messages/s, latency percentiles and errors.",
    )
    p.add_argument(
        "--connect",
        type=connect_address,
        default="127.0.0.1:7000",
        help="HOST:PORT, udp://HOST:PORT, unix:///path or unix-dgram:///path (default %(default)s)",
    )
    p.add_argument(
        "--conns", type=positive_count, default=100, help="connections (default %(default)s)"
    )
    p.add_argument(
        "--size", type=positive_count, default=1024, help="message bytes (default %(default)s)"
    )
    p.add_argument("--duration", type=seconds, default=10.0, help="seconds measured")
    p.add_argument(
        "--pipeline", type=positive_count, default=1, help="messages in flight per connection"
    )
    p.add_argument(
        "--procs",
        type=positive_count,
        default=1,
        help="processes sharing the connections (fd limit)",
    )
    p.add_argument("--warmup", type=seconds_or_zero, default=0.0, help="unmeasured seconds first")
    p.add_argument("--ramp-batch", type=positive_count, default=RAMP_BATCH, help="connects at once")
    p.add_argument("--connect-timeout", type=seconds, default=CONNECT_TIMEOUT)
    add_poller_option(p)
    p.add_argument("--seed", type=count, default=None, help="payload seed (default random)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def print_result(result: EchoLoadResult, console: Console) -> None:
    console.print(
        f"connections  {result.connected:,} of {result.conns:,} "
        f"({result.procs} process{'es' if result.procs > 1 else ''})"
    )
    console.print(
        f"messages     {result.messages:,} in {result.duration:.2f} s = "
        f"[bold]{result.messages_per_s:,.0f} msg/s[/]  ({result.bytes / 2**20:,.1f} MiB echoed)"
    )
    console.print(
        "latency µs   "
        + "  ".join(
            f"{label} {result.latency_us(q):,.0f}"
            for label, q in (("p50", 0.5), ("p99", 0.99), ("p99.9", 0.999))
        )
        + f"  max {result.latency.max / 1000:,.0f}"
    )
    if result.errors:
        console.print(
            "[red]errors[/]       "
            + ", ".join(f"{kind} {n:,}" for kind, n in sorted(result.errors.items()))
        )
    else:
        console.print("errors       none")


def run(args: argparse.Namespace) -> int:
    try:
        address = args.connect
        if address.kind != "tcp":
            return _run_other_kind(args)
        config = config_from_args(EchoLoadConfig, args, host=address.host, port=address.port)
    except ValueError as exc:
        raise CommandError(f"echo-client: {exc}") from None
    from rich.console import Console

    console = Console()
    result = run_echo_load(config, progress=not args.no_progress and console.is_terminal)
    print_result(result, console)
    return 1 if result.error_count else 0


def _run_other_kind(args: argparse.Namespace) -> int:
    """UDP, Unix stream and Unix datagram echo: the sequence-checked load of bench.udp_load.

    Datagrams may be lost or reordered, so that load numbers each message instead of
    comparing a byte stream; it reports losses as errors.
    """
    from rich.console import Console

    from ioreactor_tools.bench.udp_load import LoadConfig, run_load

    if args.procs != 1:
        raise CommandError("echo-client: --procs applies to TCP only")
    try:
        config = config_from_args(
            LoadConfig, args, address=str(args.connect), inflight=args.pipeline
        )
    except ValueError as exc:
        raise CommandError(f"echo-client: {exc}") from None
    result = run_load(config)
    print_result(result, Console())
    return 1 if result.error_count else 0
