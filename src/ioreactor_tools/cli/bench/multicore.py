"""`ioreactor bench multicore`: sub-reactor threads, fd passing vs SO_REUSEPORT, C20K."""

from __future__ import annotations

import argparse

from ioreactor_tools.bench import multicore as bench


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "multicore",
        help="threads vs one loop, fdpass vs reuseport, C20K on --workers 2",
        description=bench.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    bench.add_arguments(p)
    p.set_defaults(func=bench.run)
