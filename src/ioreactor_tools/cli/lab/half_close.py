"""``ioreactor lab half-close``: shutdown(SHUT_WR) vs close() with data still flowing back."""

from __future__ import annotations

import argparse

from ioreactor.cli.arguments import positive_count
from ioreactor_tools.cli.lab._render import render
from ioreactor_tools.lab import half_close


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("half-close", help="shutdown(SHUT_WR) vs close() (优雅关闭)")
    p.add_argument(
        "--answer-mib",
        type=positive_count,
        default=4,
        help="MiB the server sends back to the half-closed client (default 4)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    return render(half_close.report(half_close.run(answer_bytes=args.answer_mib << 20)))
