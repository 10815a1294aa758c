"""`ioreactor echo`: the TCP echo server, on one loop, sub-loop threads or worker processes."""

from __future__ import annotations

import argparse

from ioreactor.echo import EchoHandler
from ioreactor.multicore import run_server
from ioreactor.multicore.arguments import add_serving_arguments, serving_options


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("echo", help="run the TCP echo server")
    add_serving_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    return run_server(EchoHandler, **serving_options(args))
