"""``ioreactor lab copies``: sender CPU for read+send vs sendfile over loopback."""

from __future__ import annotations

import argparse

from ioreactor.cli.arguments import existing_dir, positive_count
from ioreactor_tools.cli.lab._render import render
from ioreactor_tools.lab import copies


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("copies", help="read+send vs sendfile: CPU per byte (几次拷贝)")
    p.add_argument(
        "--total-mib", type=positive_count, default=256, help="MiB sent per method (256)"
    )
    p.add_argument(
        "--file-mib", type=positive_count, default=16, help="size of the served file (16)"
    )
    p.add_argument(
        "--dir", type=existing_dir, default=None, help="where to create the file (default: $TMPDIR)"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    transfers = copies.run(total_mib=args.total_mib, file_mib=args.file_mib, directory=args.dir)
    return render(copies.report(transfers))
