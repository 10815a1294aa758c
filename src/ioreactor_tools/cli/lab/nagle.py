"""``ioreactor lab nagle``: write-write-read latency with Nagle, TCP_NODELAY and writev."""

from __future__ import annotations

import argparse

from ioreactor.cli.arguments import positive_count
from ioreactor_tools.cli.lab._render import render
from ioreactor_tools.lab import nagle


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("nagle", help="small writes: Nagle vs TCP_NODELAY vs writev")
    p.add_argument(
        "--rounds",
        type=positive_count,
        default=20,
        help="requests per pattern (default 20; about 45 ms each with Nagle)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    return render(nagle.report(nagle.run(rounds=args.rounds)))
