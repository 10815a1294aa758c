"""``ioreactor lab reset``: EPIPE, SIGPIPE, ECONNRESET and the abortive close."""

from __future__ import annotations

import argparse

from ioreactor_tools.cli.lab._render import render
from ioreactor_tools.lab import reset


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("reset", help="write after close, RST, SIGPIPE, SO_LINGER 0")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    return render(reset.report(reset.run()))
