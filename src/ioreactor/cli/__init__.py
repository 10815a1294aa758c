"""The one entry point, ``ioreactor``.

Every module in this package (and in its ``bench`` and ``lab`` sub-packages) that defines
``register(subparsers)`` adds its own sub-command, so each capability owns its CLI code
and this file never changes when one lands.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys
from collections.abc import Sequence
from types import ModuleType


def _command_modules(package: str) -> list[ModuleType]:
    pkg = importlib.import_module(package)
    modules = []
    for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{package}.{info.name}")
        if hasattr(module, "register"):
            modules.append(module)
    return modules


def _add_group(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser], name: str, help_text: str
) -> None:
    group = subparsers.add_parser(name, help=help_text)
    group_sub = group.add_subparsers(dest=f"{name}_command", metavar="NAME", required=True)
    for module in _command_modules(f"ioreactor.cli.{name}"):
        module.register(group_sub)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ioreactor", description="A reactor networking framework: servers, clients, labs."
    )
    parser.add_argument(
        "--log-level", default="INFO", help="logging level (DEBUG, INFO, WARNING, ...)"
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in _command_modules("ioreactor.cli"):
        module.register(subparsers)
    _add_group(subparsers, "bench", "benchmarks against the peer servers, side by side")
    _add_group(subparsers, "lab", "experiments on the real kernel, one per course concept")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s.%(msecs)03d %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    try:
        result: int = args.func(args)
    except KeyboardInterrupt:
        return 130
    return result


if __name__ == "__main__":
    sys.exit(main())
