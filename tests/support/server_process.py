"""A server a test runs as a real process: ``python -m ioreactor ARGS`` or ``python SCRIPT
ARGS``, its log in a file, every wait bounded, stopped with everything it forked.

Anything that forks, lowers a limit or gets signalled runs in its own process, never in
pytest's (which has threads). It is the benchmarks' :class:`pinning.ServerProcess` (its
own session; stop: SIGCONT, SIGTERM, then SIGKILL to the group, so its workers go too),
ready once its log says so: the log goes to a file the test polls, so a full pipe can
never block the server, and the port is the one the log announces.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from ioreactor.testing import LIVENESS
from ioreactor_tools.bench import pinning

#: What a server logs once it listens (the first port is the one the tests connect to).
LISTENING = r"listening on tcp://127\.0\.0\.1:(\d+)"
#: What the supervisor logs for each worker that serves, first start or restart.
WORKER_READY = r"worker (\d+) (?:\(pid (\d+)\)|restarted: pid (\d+)) ready"
#: Seconds the server has to exit after SIGTERM before the whole group is killed.
STOP_TIMEOUT = 10.0


class ServerProcess(pinning.ServerProcess):
    """``ioreactor ARGS...`` (or ``python SCRIPT ARGS...``) with its log in ``tmp_path``.

    :meth:`start` (or ``with``) runs it and waits until it listens and, with ``--workers
    N`` among the arguments, until the N workers are ready; :meth:`launch` only runs it
    (a server the test expects to fail, or waits for itself). ``preexec`` runs in the
    child before exec (e.g. to lower RLIMIT_NOFILE).
    """

    def __init__(
        self,
        tmp_path: Path,
        *args: str,
        name: str = "server",
        script: Path | None = None,
        preexec: Callable[[], None] | None = None,
    ) -> None:
        head = [sys.executable, str(script)] if script else [sys.executable, "-m", "ioreactor"]
        super().__init__(
            [*head, *args],
            port=0,  # learned from the log
            ready_timeout=LIVENESS,
            stop_grace=STOP_TIMEOUT,
            log_path=tmp_path / f"{name}.log",
            preexec=preexec,
        )
        self.workers = _workers_flag(args)

    def log(self) -> str:
        assert self.log_path is not None
        return self.log_path.read_text(errors="replace")

    def wait_for(
        self, pattern: str, count: int = 1, timeout: float = LIVENESS, *, alive: bool = True
    ) -> list[re.Match[str]]:
        """Wait until ``pattern`` matches ``count`` times in the log; the matches.

        ``alive``: give up early if the server process has exited (not for a log that
        other processes, its workers, keep writing).
        """
        proc = self.popen()
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            matches = list(regex.finditer(self.log()))
            if len(matches) >= count:
                return matches
            if (alive and proc.poll() is not None) or time.monotonic() > deadline:
                raise AssertionError(
                    f"{pattern!r} x{count} not in the log (exit {proc.poll()}):\n{self.log()}"
                )
            time.sleep(0.02)

    def wait_ready(self, proc: subprocess.Popen[bytes]) -> None:
        """Until it listens (its port) and every worker is ready (as the supervisor sees it)."""
        self.port = int(self.wait_for(LISTENING, timeout=self.ready_timeout)[0].group(1))
        if self.workers:
            self.wait_for(WORKER_READY, self.workers, timeout=self.ready_timeout)

    def worker_pids(self) -> dict[int, int]:
        """index -> pid of the newest ready process of each worker position."""
        pids: dict[int, int] = {}
        for m in re.finditer(WORKER_READY, self.log()):
            pids[int(m.group(1))] = int(m.group(2) or m.group(3))
        return pids

    def fds(self) -> int:
        """Open fds of the server process itself (the supervisor, with workers)."""
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def rss(self) -> int:
        """Resident set of the server's process tree, bytes."""
        return self.sample(count_fds=False).rss_bytes

    def wait(self, timeout: float = LIVENESS) -> int:
        return super().wait(timeout)


def _workers_flag(args: tuple[str, ...]) -> int:
    """The N of ``--workers N`` (0 without the flag)."""
    for i, arg in enumerate(args[:-1]):
        if arg == "--workers":
            return int(args[i + 1])
    return 0


def accepts(port: int) -> bool:
    """Whether 127.0.0.1:``port`` accepts a connection now."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def wait_accepting(
    port: int, process: subprocess.Popen[bytes] | None = None, timeout: float = LIVENESS
) -> None:
    """Return once 127.0.0.1:``port`` accepts a connection; AssertionError if
    ``process`` (the server) exits first or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while not accepts(port):
        exited = process is not None and process.poll() is not None
        assert not exited, f"the server exited ({process.returncode}) before listening"
        assert time.monotonic() < deadline, f"nothing accepts on port {port} after {timeout} s"
        time.sleep(0.05)
