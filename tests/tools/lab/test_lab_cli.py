"""``ioreactor lab NAME`` end to end: each command runs, prints its table, exits 0."""

from __future__ import annotations

import pytest
from rich.console import Console

from ioreactor.cli import main
from ioreactor_tools.cli.lab._render import render
from ioreactor_tools.lab.report import Finding, LabReport


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["time-wait", "--connections", "3"], "EADDRINUSE"),
        (["half-close", "--answer-mib", "1"], "FIN_WAIT2"),
        (["udp-connect"], "ECONNREFUSED"),
        (["reset"], "SIGPIPE"),
        (["select-limit", "--sizes", "50", "2000", "--calls", "10"], "ValueError"),
        (["nagle", "--rounds", "4"], "TCP_NODELAY"),
    ],
)
def test_lab_command(argv: list[str], expected: str, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["lab", *argv])
    out = capsys.readouterr().out
    assert expected in out
    assert code == 0, out


def test_copies_command_prints_both_methods(capsys: pytest.CaptureFixture[str]) -> None:
    """Two rounds are too few for a reliable CPU ratio (test_lab_copies checks that):
    here only the command's wiring and output."""
    code = main(["lab", "copies", "--total-mib", "16", "--file-mib", "8"])
    out = capsys.readouterr().out
    assert "read + send" in out and "sendfile" in out and "CPU µs/MiB" in out
    assert code in (0, 1)


def test_render_flags_contradictions_and_prints_brackets_literally() -> None:
    report = LabReport("t", "c", findings=[Finding("s", "[Errno 98] in use", "x", False)])
    console = Console(record=True, width=200)
    assert render(report, console) == 1
    assert "[Errno 98] in use" in console.export_text()
