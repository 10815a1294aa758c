"""``ioreactor lab select-limit``: select fails at FD_SETSIZE; poll and epoll do not."""

from __future__ import annotations

import argparse

from ioreactor.cli.arguments import positive_count
from ioreactor_tools.cli.lab._render import render
from ioreactor_tools.lab import select_limit


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("select-limit", help="select vs poll vs epoll: limit and cost")
    p.add_argument(
        "--sizes",
        type=positive_count,
        nargs="+",
        default=[100, 1000, 10000],
        help="watched-descriptor counts for the cost table",
    )
    p.add_argument("--calls", type=positive_count, default=200, help="waits timed per size")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    result = select_limit.run(sizes=tuple(args.sizes), calls=args.calls)
    return render(select_limit.report(result))
