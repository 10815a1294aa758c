"""`ioreactor bench c100k`: 100,000 idle-then-active keep-alive connections to `serve`."""

from __future__ import annotations

import argparse

from ioreactor_tools.bench import c100k as bench


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "c100k",
        help="100,000 concurrent keep-alive connections to ioreactor serve, each served twice",
        description=bench.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    bench.add_arguments(p)
    p.set_defaults(func=bench.run)
