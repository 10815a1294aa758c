"""The one entry point, ``ioreactor``.

Every module in this package that defines ``register(subparsers)`` adds the sub-command
named after the module (``echo_client`` -> ``echo-client``), so each capability owns its
CLI code and this file never changes when one lands.

Other distributions add commands through the ``ioreactor.commands`` entry-point group
(``ioreactor[tools]`` adds ``lab``, ``bench``, ``model`` and ``echo-client`` that way):
an entry point names a module with ``register(subparsers)``, or a package, which becomes
a command group whose sub-commands are its modules (``ioreactor bench echo``).

Only the module of the command being run is imported: a server started with
``ioreactor echo`` does not pay for the benchmarks' imports (asyncio, rich, matplotlib)
in start-up time or memory. ``--help`` and unknown names import them all.

Every command reports bad input the same way, as one line ``ioreactor: error: ...`` with
exit status 2 (:mod:`ioreactor.cli.arguments`), and unwinds on SIGTERM, SIGHUP and
SIGINT (:mod:`ioreactor.cli.interrupts`).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import signal
import sys
from collections.abc import Sequence
from importlib.metadata import entry_points
from types import ModuleType

from ioreactor.build import describe
from ioreactor.cli.arguments import CommandError, CommandLineParser, log_level
from ioreactor.cli.interrupts import unwinding_on_stop_signals

#: The entry-point group through which other distributions add commands.
PLUGIN_GROUP = "ioreactor.commands"


def command_name(module_name: str) -> str:
    """The command a module defines: its last name, ``_`` spelled ``-``."""
    return module_name.rsplit(".", 1)[-1].replace("_", "-")


def command_modules(package: str, wanted: str | None) -> list[ModuleType]:
    """The command modules of ``package``: only ``wanted``'s when it names one."""
    pkg = importlib.import_module(package)
    names = sorted(
        info.name
        for info in pkgutil.iter_modules(pkg.__path__)
        if not info.name.startswith("_") and not info.ispkg
    )
    if wanted is not None and wanted in {command_name(n) for n in names}:
        names = [n for n in names if command_name(n) == wanted]
    modules = [importlib.import_module(f"{package}.{name}") for name in names]
    return [m for m in modules if hasattr(m, "register")]


def _plugins() -> dict[str, str]:
    """Command name -> module path, for every installed ``ioreactor.commands`` plugin."""
    return {ep.name: ep.value for ep in entry_points(group=PLUGIN_GROUP)}


def _first_positional(argv: Sequence[str]) -> tuple[str | None, list[str]]:
    args = list(argv)
    while args and args[0].startswith("-"):
        option = args.pop(0)
        if option == "--log-level" and args:
            args.pop(0)
    return (args[0] if args else None), args[1:]


def _add_plugin(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    module_path: str,
    rest: list[str],
) -> None:
    module = importlib.import_module(module_path)
    if not hasattr(module, "__path__"):
        module.register(subparsers)
        return
    # A package: a command group, one sub-command per module.
    help_text = (module.__doc__ or name).strip().splitlines()[0]
    group = subparsers.add_parser(name, help=help_text)
    group_sub = group.add_subparsers(dest=f"{name}_command", metavar="NAME", required=True)
    sub_command, _ = _first_positional(rest)
    for sub in command_modules(module_path, sub_command):
        sub.register(group_sub)


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser; given ``argv``, only the commands it names are imported."""
    command, rest = _first_positional(argv if argv is not None else [])
    parser: argparse.ArgumentParser = CommandLineParser(
        prog="ioreactor", description="A reactor networking framework: servers, clients, labs."
    )
    parser.add_argument("--version", action="version", version=describe())
    parser.add_argument(
        "--log-level",
        type=log_level,
        default="INFO",
        help="logging level: DEBUG, INFO, WARNING, ERROR or CRITICAL (default INFO)",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    plugins = _plugins()
    if command in plugins:
        _add_plugin(subparsers, command, plugins[command], rest)
        return parser
    own = command_modules("ioreactor.cli", command)
    for module in own:
        module.register(subparsers)
    if command not in {command_name(m.__name__) for m in own}:
        # --help, or a name nobody has: every command, so argparse can list them.
        for name, module_path in sorted(plugins.items()):
            _add_plugin(subparsers, name, module_path, rest)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    with unwinding_on_stop_signals():
        try:
            args = build_parser(arguments).parse_args(arguments)
            logging.basicConfig(
                level=args.log_level,
                format="%(asctime)s.%(msecs)03d %(levelname)s %(name)s: %(message)s",
                datefmt="%H:%M:%S",
            )
            result: int = args.func(args)
        except CommandError as exc:
            print(f"ioreactor: error: {exc}", file=sys.stderr)
            return exc.status
        except KeyboardInterrupt:
            return 128 + signal.SIGINT
    return result


if __name__ == "__main__":
    sys.exit(main())
