"""``ioreactor lab time-wait``: TIME_WAIT on the active closer, EADDRINUSE and SO_REUSEADDR."""

from __future__ import annotations

import argparse

from ioreactor.cli.arguments import positive_count
from ioreactor_tools.cli.lab._render import render
from ioreactor_tools.lab import time_wait


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("time-wait", help="who holds TIME_WAIT; EADDRINUSE vs SO_REUSEADDR")
    p.add_argument(
        "--connections",
        type=positive_count,
        default=20,
        help="short client-closed connections to pile up TIME_WAIT (default 20)",
    )
    p.add_argument(
        "--lifetime", action="store_true", help="also wait (about 60 s) for one TIME_WAIT to expire"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    result = time_wait.run(connections=args.connections, lifetime=args.lifetime)
    return render(time_wait.report(result))
