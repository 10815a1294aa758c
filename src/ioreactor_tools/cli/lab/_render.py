"""Print a :class:`LabReport` with rich: the findings table, extra tables, notes.

Shared by every ``ioreactor lab`` command (the leading underscore keeps the command
loader from taking it for a lab). The exit code is 1 when this kernel contradicted the
course somewhere, so scripts notice; "n/a" marks a finding not judged (not observable
here, or shown for scale), and the report's notes say why.
"""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table as RichTable

from ioreactor_tools.lab.report import LabReport

_VERDICT = {True: "[green]yes[/]", False: "[red]NO[/]", None: "[yellow]n/a[/]"}


def render(report: LabReport, console: Console | None = None) -> int:
    console = console or Console()
    table = RichTable(title=escape(f"{report.title}  ({report.chapter})"), show_lines=True)
    table.add_column("step", style="bold")
    table.add_column("observed on this kernel")
    table.add_column("the course says")
    table.add_column("as predicted?", justify="center")
    for f in report.findings:
        table.add_row(escape(f.step), escape(f.observed), escape(f.course), _VERDICT[f.matches])
    console.print(table)
    for extra in report.tables:
        rich_table = RichTable(title=escape(extra.title))
        for column in extra.columns:
            rich_table.add_column(column)
        for row in extra.rows:
            rich_table.add_row(*map(escape, row))
        console.print(rich_table)
    for note in report.notes:
        console.print(f"[yellow]note:[/] {escape(note)}")
    return 1 if report.contradicted else 0
