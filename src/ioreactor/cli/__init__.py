"""The one entry point, ``ioreactor``.

Every module in this package (and in its ``bench`` and ``lab`` sub-packages) that defines
``register(subparsers)`` adds the sub-command named after the module (``echo_client`` ->
``echo-client``), so each capability owns its CLI code and this file never changes when
one lands.

Only the module of the command being run is imported: a server started with
``ioreactor echo`` does not pay for the benchmarks' imports (asyncio, rich, matplotlib)
in start-up time or memory. ``--help`` and unknown names import them all.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys
from collections.abc import Sequence
from types import ModuleType

GROUPS = {
    "bench": "benchmarks against the peer servers, side by side",
    "lab": "experiments on the real kernel, one per course concept",
}


def _command_name(module_name: str) -> str:
    return module_name.replace("_", "-")


def _modules(package: str, wanted: str | None) -> list[ModuleType]:
    """The command modules of ``package``: only ``wanted``'s when it names one."""
    pkg = importlib.import_module(package)
    names = sorted(
        info.name
        for info in pkgutil.iter_modules(pkg.__path__)
        if not info.name.startswith("_") and info.name not in GROUPS
    )
    if wanted is not None and wanted in {_command_name(n) for n in names}:
        names = [n for n in names if _command_name(n) == wanted]
    modules = [importlib.import_module(f"{package}.{name}") for name in names]
    return [m for m in modules if hasattr(m, "register")]


def _first_positional(argv: Sequence[str]) -> tuple[str | None, list[str]]:
    args = list(argv)
    while args and args[0].startswith("-"):
        option = args.pop(0)
        if option == "--log-level" and args:
            args.pop(0)
    return (args[0] if args else None), args[1:]


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser; given ``argv``, only the commands it names are imported."""
    command, rest = _first_positional(argv if argv is not None else [])
    parser = argparse.ArgumentParser(
        prog="ioreactor", description="A reactor networking framework: servers, clients, labs."
    )
    parser.add_argument(
        "--log-level", default="INFO", help="logging level (DEBUG, INFO, WARNING, ...)"
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in _modules("ioreactor.cli", None if command in GROUPS else command):
        module.register(subparsers)
    for name, help_text in GROUPS.items():
        group = subparsers.add_parser(name, help=help_text)
        group_sub = group.add_subparsers(dest=f"{name}_command", metavar="NAME", required=True)
        if command is None or command == name:
            sub_command, _ = _first_positional(rest)
            for module in _modules(f"ioreactor.cli.{name}", sub_command):
                module.register(group_sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(arguments).parse_args(arguments)
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
