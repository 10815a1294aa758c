"""`ioreactor bench c100k`: 100,000 idle-then-active keep-alive connections to `serve`."""

from __future__ import annotations

import argparse

from ioreactor_tools.bench import c100k as bench
from ioreactor_tools.cli.bench._args import add_engine_command


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    add_engine_command(
        subparsers,
        "c100k",
        "100,000 concurrent keep-alive connections to ioreactor serve, each served twice",
        bench,
    )
