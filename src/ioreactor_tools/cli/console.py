"""The rich console every lab and benchmark prints its tables on.

On a terminal rich uses its width; into a pipe or a log file it would assume 80 columns
and cut the cells of a wide table (``threa…`` for ``thread-per-connection``), so there the
console gets ``TABLE_WIDTH`` columns. rich is imported when the console is built: a
command that only parses its arguments does not load it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console

#: Console width when the output is not a terminal.
TABLE_WIDTH = 160


def report_console() -> Console:
    """A console whose tables stay readable in a pipe or a log file."""
    from rich.console import Console

    console = Console()
    if not console.is_terminal:
        console = Console(width=TABLE_WIDTH)
    return console
