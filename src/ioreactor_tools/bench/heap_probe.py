"""Run an ``ioreactor`` command with tracemalloc on; report its Python heap on SIGUSR1.

::

    python -m ioreactor_tools.bench.heap_probe REPORT.json echo --listen 127.0.0.1:7000

starts tracemalloc before anything else is imported, then runs the command as
``ioreactor`` would. On SIGUSR1 the process collects garbage and writes
``{"current": bytes, "peak": bytes}`` (``tracemalloc.get_traced_memory()``) to REPORT.json
(written to a temporary name, then renamed, so a reader never sees half a file). This is
how ``ioreactor bench idle`` reads the heap *inside* the server without changing it.
"""

from __future__ import annotations

import tracemalloc

tracemalloc.start()

import gc  # noqa: E402  (after tracemalloc.start: count everything the command allocates)
import json  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402
from types import FrameType  # noqa: E402


def _report_to(path: str) -> None:
    def _report(signum: int, frame: FrameType | None) -> None:
        gc.collect()
        current, peak = tracemalloc.get_traced_memory()
        tmp = f"{path}.tmp"
        with open(tmp, "w") as f:
            json.dump({"current": current, "peak": peak}, f)
        os.replace(tmp, path)

    signal.signal(signal.SIGUSR1, _report)


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print("usage: python -m ioreactor_tools.bench.heap_probe REPORT.json COMMAND [ARGS...]")
        return 2
    _report_to(argv[0])
    from ioreactor.cli import main as ioreactor_main

    return ioreactor_main(argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
