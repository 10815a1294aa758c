"""``ioreactor ...`` as a real process, its log in a file, for the CLI-level tests.

The log goes to a file read by polling, so a full pipe can never block the server, and
every wait is bounded. Use as a context manager: whatever happens, the process (and, with
``new_session``, its whole process group) is gone afterwards.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

#: Liveness bound for anything the tests wait for (generous: the machine is shared).
TIMEOUT = 30.0


class CliProcess:
    """``python -m ioreactor *args`` with its stdout and stderr in ``tmp_path/name.log``."""

    def __init__(
        self,
        tmp_path: Path,
        *args: str,
        name: str = "ioreactor",
        cwd: Path | None = None,
        new_session: bool = False,
    ) -> None:
        self.log_path = tmp_path / f"{name}.log"
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "ioreactor", *args],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                start_new_session=new_session,
            )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for(self, pattern: str, timeout: float = TIMEOUT) -> re.Match[str]:
        """The first match of ``pattern`` in the log; fails if the process exits first."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            match = regex.search(self.log())
            if match:
                return match
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(
                    f"{pattern!r} not in the log (exit {self.proc.poll()}):\n{self.log()}"
                )
            time.sleep(0.02)

    def wait(self, timeout: float = TIMEOUT) -> int:
        """The exit status, waiting at most ``timeout`` (then the test fails)."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"no exit within {timeout} s:\n{self.log()}") from None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = TIMEOUT) -> int:
        self.proc.send_signal(sig)
        return self.wait(timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            try:
                if self.proc.pid == os.getpgid(self.proc.pid):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                else:
                    self.proc.kill()
            except ProcessLookupError:
                pass
            self.proc.wait()

    def __enter__(self) -> CliProcess:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.kill()


def run_cli(
    *args: str, timeout: float = TIMEOUT, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -m ioreactor ARGS`` run to its end (``env`` added to this one's): its exit
    status, stdout and stderr as text."""
    return subprocess.run(
        [sys.executable, "-m", "ioreactor", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=None if env is None else {**os.environ, **env},
        check=False,
    )


#: What ``ioreactor serve`` logs once every worker accepts (the supervisor), or once it
#: listens (``--workers 0``), with the port.
SERVING = r"(?:supervisor \(pid \d+\)|server \(pid \d+\)) listening on tcp://127\.0\.0\.1:(\d+)"


def start_serve(
    tmp_path: Path, *args: str, cwd: Path | None = None, name: str = "serve"
) -> tuple[CliProcess, int]:
    """``ioreactor serve *args`` on a port of the kernel's choosing, in a session of its
    own (so that cleanup reaches every process it started); returns it once it serves,
    and its port."""
    process = CliProcess(
        tmp_path, "serve", "--listen", "127.0.0.1:0", *args, name=name, cwd=cwd, new_session=True
    )
    try:
        port = int(process.wait_for(SERVING).group(1))
    except BaseException:
        process.kill()
        raise
    return process, port


def http_get(port: int, path: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
    """One ``GET`` on a new connection to 127.0.0.1: (status, body text)."""
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
    try:
        conn.request("GET", path, headers=headers or {})
        reply = conn.getresponse()
        return reply.status, reply.read().decode()
    finally:
        conn.close()
