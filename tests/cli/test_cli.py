"""The `ioreactor` entry point: every command registers, and none loads heavy modules."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from ioreactor.cli import build_parser
from support.cli_process import run_cli

HEAVY = ("asyncio", "rich", "matplotlib", "uvloop")


def _heavy_modules_after(argv: list[str]) -> str:
    code = (
        "import sys; from ioreactor.cli import build_parser; "
        f"build_parser({argv!r}).parse_args({argv!r}); "
        f"print([m for m in {HEAVY!r} if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return out.stdout.strip()


@pytest.mark.parametrize(
    "argv",
    [["echo", "--listen", "127.0.0.1:0"], ["--log-level", "DEBUG", "echo"], ["bench", "idle"]],
)
def test_running_a_command_imports_only_that_command(argv: list[str]) -> None:
    # A server started by `ioreactor echo` must not pay for the benchmarks' imports
    # (RSS and start-up time are measured against minimal peers).
    assert _heavy_modules_after(argv) == "[]"


def test_full_parser_lists_every_command() -> None:
    help_text = build_parser().format_help()
    for command in ("echo", "echo-client", "serve", "heartbeat", "model", "bench", "lab"):
        assert command in help_text


@pytest.mark.parametrize("group", ["bench", "lab"])
def test_command_groups_have_their_subcommands(group: str) -> None:
    parser = build_parser()
    with pytest.raises(SystemExit) as exit_info:
        parser.parse_args([group])
    assert exit_info.value.code == 2  # a sub-command is required


def test_unknown_command_is_refused() -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["no-such-command"])


def _version_line(**env: str) -> str:
    done = run_cli("--version", timeout=60, env=env)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_version_is_single_sourced_and_says_the_build() -> None:
    from importlib.metadata import version

    import ioreactor
    from ioreactor.build import build_kind, is_compiled
    from ioreactor.net import connection

    kind = "compiled" if is_compiled(connection) else "pure Python"
    assert build_kind() == kind
    assert ioreactor.__version__ == version("ioreactor")
    env = {"IOREACTOR_NO_EXTENSIONS": os.environ.get("IOREACTOR_NO_EXTENSIONS", "")}
    assert _version_line(**env) == f"ioreactor {version('ioreactor')} ({kind}" + (
        ", IOREACTOR_NO_EXTENSIONS=1)\n" if env["IOREACTOR_NO_EXTENSIONS"] else ")\n"
    )
    forced = _version_line(IOREACTOR_NO_EXTENSIONS="1")
    assert forced == f"ioreactor {version('ioreactor')} (pure Python, IOREACTOR_NO_EXTENSIONS=1)\n"


def test_import_ioreactor_does_not_read_the_metadata() -> None:
    code = "import sys, ioreactor; print('importlib.metadata' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
