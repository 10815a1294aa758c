"""`ioreactor bench multicore`: sub-reactor threads, fd passing vs SO_REUSEPORT, C20K."""

from __future__ import annotations

import argparse

from ioreactor_tools.bench import multicore as bench
from ioreactor_tools.cli.bench._args import add_engine_command


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    add_engine_command(
        subparsers,
        "multicore",
        "threads vs one loop, fdpass vs reuseport, C20K on --workers 2",
        bench,
    )
