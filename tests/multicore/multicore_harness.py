"""Running ``server_app.py`` in a subprocess and talking to it, for the multicore tests.

Anything that forks runs in its own process, never in pytest's (which has threads).
The server's log goes to a file, read by polling, so a full pipe can never block it.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

APP = Path(__file__).with_name("server_app.py")
#: Liveness bound for anything the tests wait for (generous: the machine is shared).
TIMEOUT = 30.0


class AppServer:
    """``server_app.py`` (or another server ``script``) with the given flags; its log in
    ``tmp_path``."""

    def __init__(
        self, tmp_path: Path, *flags: str, name: str = "server", script: Path = APP
    ) -> None:
        self.log_path = tmp_path / f"{name}.log"
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, str(script), *flags],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self.port = 0
        self.workers = _workers_flag(flags)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for(
        self, pattern: str, count: int = 1, timeout: float = TIMEOUT, *, alive: bool = True
    ) -> list[re.Match[str]]:
        """Wait until ``pattern`` matches ``count`` times in the log; return the matches.

        ``alive``: give up early if the server process has exited (not for a log that
        other processes, its workers, keep writing).
        """
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            matches = list(regex.finditer(self.log()))
            if len(matches) >= count:
                return matches
            if (alive and self.proc.poll() is not None) or time.monotonic() > deadline:
                raise AssertionError(
                    f"{pattern!r} x{count} not in the log (exit {self.proc.poll()}):\n{self.log()}"
                )
            time.sleep(0.02)

    def start(self) -> AppServer:
        """Wait until it listens and every worker is serving."""
        match = self.wait_for(r"listening on tcp://127\.0\.0\.1:(\d+)")[0]
        self.port = int(match.group(1))
        if self.workers:
            self.wait_for(
                r"worker \d+ \(pid \d+\) ready", self.workers
            )  # as the supervisor sees it
        return self

    def worker_pids(self) -> dict[int, int]:
        """index -> pid of the newest ready process of each worker position."""
        pids: dict[int, int] = {}
        pattern = r"worker (\d+) (?:\(pid (\d+)\)|restarted: pid (\d+)) ready"
        for m in re.finditer(pattern, self.log()):
            pids[int(m.group(1))] = int(m.group(2) or m.group(3))
        return pids

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float = TIMEOUT) -> int:
        return self.proc.wait(timeout)

    def stop(self) -> None:
        """Cleanup whatever happened: SIGKILL the process group's survivors."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(TIMEOUT)
        for pid in self.worker_pids().values():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self._log.close()

    def open_fds(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def connect(self) -> LineClient:
        return LineClient(self.port)


def _workers_flag(flags: tuple[str, ...]) -> int:
    for i, flag in enumerate(flags):
        if flag == "--workers":
            return int(flags[i + 1])
    raise ValueError("give --workers explicitly")


class LineClient:
    """A blocking line-protocol client."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._pending = b""

    def send(self, line: bytes) -> None:
        self.sock.sendall(line + b"\n")

    def readline(self) -> bytes:
        while b"\n" not in self._pending:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed by the server")
            self._pending += chunk
        line, _, self._pending = self._pending.partition(b"\n")
        return line

    def request(self, line: bytes) -> bytes:
        self.send(line)
        return self.readline()

    def pid(self) -> int:
        return int(self.request(b"pid"))

    @property
    def port(self) -> int:
        port: int = self.sock.getsockname()[1]
        return port

    def close(self) -> None:
        self.sock.close()


def wait_until(predicate: Callable[[], bool], timeout: float = TIMEOUT) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False
