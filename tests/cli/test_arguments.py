"""Every option of every command refuses a bad value with one line and exit status 2.

The test walks the whole parser -- the framework's commands and the tools' (bench, lab,
model, echo-client), found the way ``ioreactor`` finds them -- and gives each option
that takes a value the bad values of its type. An option whose type this test does not
know fails it: use a shared type from :mod:`ioreactor.cli.arguments` (or ``choices``),
or add the new type's bad values here.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
from collections.abc import Iterator

import pytest

from ioreactor.cli import build_parser
from support.cli_process import run_cli

#: Bad values for each argument type, by the type function's qualified name.
BAD_VALUES: dict[str, tuple[str, ...]] = {
    "count": ("-1", "x", "1.5"),
    "positive_count": ("0", "-3", "x"),
    "count_list": ("0", "100,x", "100,-1", ""),
    "seconds": ("0", "-1", "x", "nan", "inf"),
    "seconds_or_zero": ("-0.5", "x", "nan"),
    "fraction": ("0", "1.5", "x"),
    "uid": ("-1", "x"),
    "log_level": ("LOUD",),
    "existing_dir": ("/nonexistent-dir", "/dev/null"),
    "output_dir": ("/dev/null", "/dev/null/results"),
    "readable_file": ("/nonexistent-file.pem", "/"),
    "sni_certificate": ("example.com", "=cert.pem", "example.com=/nonexistent.pem"),
    "_address_type.<locals>.address": (
        "nonsense",
        ":8080",
        "0.0.0.0:99999",
        "[::1:80",
        "unix://relative.sock",
        "unix:///nonexistent-dir/x.sock",
        "gopher://host:70",
        "127.0.0.1:-1",
    ),
    "sockopt": ("NOPE=1", "SO_RCVBUF", "SO_RCVBUF=lots"),
    "keepalive_timers": ("60:10", "0:10:3", "a:b:c"),
    "names_from.<locals>.names": ("nope", "ioreactor,nope"),
    "one_of.<locals>.name": ("nope",),
    "app_spec": ("x", "1mod:app", "a:b:c", "mod:"),
    "url_path": ("app", "/a?b", "/a b", "/caf\u00e9"),
    "proxy_trust": ("nonsense", "10.0.0.0/33", "10.0.0.1/8", "127.0.0.1,x"),
    "absolute_url_path": ("healthz", "/a b", "/x?y", ""),
    "_mix": ("nope=1", "keepalive=-1", "keepalive=0", "keepalive=nan"),
}


def parsers(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """Every parser of the tree with the command path that reaches it."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from parsers(sub, (*path, name))


def valued_actions(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    """The options and positionals that take a value (not flags, help or sub-commands),
    hidden ones included."""
    return [
        a for a in parser._actions if a.nargs != 0 and not isinstance(a, argparse._SubParsersAction)
    ]


def type_name(action: argparse.Action) -> str:
    return getattr(action.type, "__qualname__", repr(action.type))


def bad_values(action: argparse.Action) -> tuple[str, ...]:
    if action.type is None and action.choices is not None:
        return ("no-such-choice",)
    return BAD_VALUES.get(type_name(action), ())


def required_positionals(parser: argparse.ArgumentParser) -> list[str]:
    """Valid values for the positionals a command needs (``model NAME``)."""
    values = []
    for action in parser._actions:
        if not action.option_strings and action.nargs is None and action.choices:
            values.append(next(iter(action.choices)))
    return values


def cases() -> Iterator[tuple[tuple[str, ...], argparse.Action, list[str]]]:
    for path, parser in parsers(build_parser()):
        for action in valued_actions(parser):
            yield path, action, required_positionals(parser)


CASES = list(cases())


def case_id(case: tuple[tuple[str, ...], argparse.Action, list[str]]) -> str:
    path, action, _ = case
    return " ".join([*path, action.option_strings[0] if action.option_strings else action.dest])


def test_the_walk_finds_every_command() -> None:
    paths = {path for path, _ in parsers(build_parser())}
    for command in ("serve", "echo", "heartbeat serve", "heartbeat connect", "echo-client"):
        assert tuple(command.split()) in paths
    for group in ("bench", "lab"):
        package = importlib.import_module(f"ioreactor_tools.cli.{group}")
        modules = {
            info.name.replace("_", "-")
            for info in pkgutil.iter_modules(package.__path__)
            if not info.name.startswith("_")
        }
        assert {p[1] for p in paths if p[:1] == (group,) and len(p) == 2} == modules
        assert len(modules) >= 9
    assert ("model",) in paths
    assert len(CASES) > 100


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_every_option_uses_a_type_with_known_bad_values(
    case: tuple[tuple[str, ...], argparse.Action, list[str]],
) -> None:
    _, action, _ = case
    assert action.type is not None or action.choices is not None, (
        "a free-text option: give it a type from ioreactor.cli.arguments"
    )
    assert bad_values(action), (
        f"type {type_name(action)} is not in BAD_VALUES: use a shared type from "
        "ioreactor.cli.arguments or add its bad values to this test"
    )


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_every_bad_value_is_one_line_and_exit_2(
    case: tuple[tuple[str, ...], argparse.Action, list[str]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    path, action, positionals = case
    for bad in bad_values(action):
        if action.option_strings:
            argv = [*path, *positionals, action.option_strings[0], bad]
        else:
            argv = [*path, bad]
        with pytest.raises(SystemExit) as exit_info:
            build_parser(argv).parse_args(argv)
        err = capsys.readouterr().err
        assert exit_info.value.code == 2, (argv, err)
        assert err.startswith("ioreactor: error: ") and err.count("\n") == 1, (argv, err)
        assert "Traceback" not in err
        shown = action.option_strings[0] if action.option_strings else action.metavar or ""
        assert shown in err, (argv, err)


#: The cases of the issue, each once as a real process (main(), the console script).
ISSUE_CASES = [
    ["serve", "--listen", "nonsense"],
    ["serve", "--listen", ":8080"],
    ["serve", "--listen", "0.0.0.0:99999"],
    ["serve", "--workers", "-1"],
    ["serve", "--workers", "0", "--loops", "-3"],
    ["serve", "--static", "/nonexistent"],
    ["heartbeat", "serve", "--listen", "nonsense"],
    ["echo", "--workers", "-1"],
    ["echo", "--listen", "unix:///nonexistent-dir/x.sock"],
    ["--log-level", "LOUD", "echo"],
    ["echo", "--listen", "127.0.0.1:0", "--listen", "udp://127.0.0.1:0", "--workers", "2"],
    ["serve", "--factory"],
]


def test_the_issues_bad_arguments_are_one_line_exit_2_as_real_processes() -> None:
    for argv in ISSUE_CASES:
        done = run_cli(*argv, timeout=60)
        assert done.returncode == 2, (argv, done.stderr)
        assert done.stderr.startswith("ioreactor: error: "), (argv, done.stderr)
        assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, (argv, done.stderr)
        assert done.stdout == ""


def test_a_missing_socket_directory_is_named() -> None:
    done = run_cli("echo", "--listen", "unix:///nonexistent-dir/x.sock", timeout=60)
    assert "directory /nonexistent-dir does not exist" in done.stderr, done.stderr
