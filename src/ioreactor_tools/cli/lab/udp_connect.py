"""``ioreactor lab udp-connect``: only a connected UDP socket hears ECONNREFUSED."""

from __future__ import annotations

import argparse

from ioreactor_tools.cli.lab._render import render
from ioreactor_tools.lab import udp_connect


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("udp-connect", help="connected vs unconnected UDP to a closed port")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    return render(udp_connect.report(udp_connect.run()))
