"""``ioreactor lab keepalive``: keepalive probes, a silent peer, and the app heartbeat."""

from __future__ import annotations

import argparse

from ioreactor.cli.arguments import positive_count
from ioreactor_tools.cli.lab._render import render
from ioreactor_tools.lab import keepalive


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("keepalive", help="TCP keepalive vs an application heartbeat")
    p.add_argument(
        "--idle", type=positive_count, default=1, help="TCP_KEEPIDLE seconds (default 1)"
    )
    p.add_argument(
        "--interval", type=positive_count, default=1, help="TCP_KEEPINTVL seconds (default 1)"
    )
    p.add_argument("--count", type=positive_count, default=2, help="TCP_KEEPCNT probes (default 2)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    result = keepalive.run(idle=args.idle, interval=args.interval, count=args.count)
    return render(keepalive.report(result))
