"""A program a test starts and must end: its own session, its output in a log file, every
wait bounded, and stopped together with everything it forked.

``spawn(argv, log_path)`` starts it (``start_new_session``: its process group is its pid,
so a server's workers are reached through the group); :meth:`Process.stop` sends SIGTERM,
then SIGKILL to the whole group. The group is only signalled while the leader is not yet
reaped (its zombie keeps the group id from being reused), so a signal can never reach
another program's processes.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

#: Seconds a program has to exit after SIGTERM, then after SIGKILL.
STOP_TIMEOUT = 10.0
KILL_TIMEOUT = 5.0


def child_pids(pid: int) -> list[int]:
    """The processes ``pid`` forked that are still running (its workers, for a supervisor)."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [int(child) for child in children]


def terminate(popen: subprocess.Popen[bytes], timeout: float) -> int:
    """SIGTERM ``popen`` if it still runs, SIGKILL after ``timeout`` seconds; its status."""
    if popen.poll() is None:
        popen.terminate()
        try:
            return popen.wait(timeout)
        except subprocess.TimeoutExpired:
            popen.kill()
    return popen.wait()


class Process:
    """A started program; ``where`` names the place it runs in messages (a host)."""

    def __init__(
        self, argv: Sequence[str], popen: subprocess.Popen[bytes], log_path: Path, where: str
    ) -> None:
        self.argv = list(argv)
        self.popen = popen
        self.log_path = log_path
        self.where = where

    def __repr__(self) -> str:
        return f"<Process {self.argv[0]} pid={self.pid} in {self.where}>"

    @property
    def pid(self) -> int:
        return self.popen.pid

    def running(self) -> bool:
        """Whether the program itself still runs (asked without reaping it)."""
        if self.popen.returncode is not None:
            return False
        exited = os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        return exited is None

    def send_signal(self, sig: int) -> None:
        """Send ``sig`` to the program itself (not to what it forked)."""
        if self.popen.returncode is None:
            self.popen.send_signal(sig)

    def kill_group(self, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to the program and every process of its session (its workers)."""
        if self.popen.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, sig)

    def wait(self, timeout: float) -> int:
        """Its exit status; TimeoutError if it still runs after ``timeout``. Whatever it
        forked and left running is killed before the leader is reaped."""
        deadline = time.monotonic() + timeout
        while self.popen.returncode is None:
            if not self.running():
                self.kill_group()
                return self.popen.wait()
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self!r} still running after {timeout} s")
            time.sleep(0.02)
        return self.popen.returncode

    def stop(self, timeout: float = STOP_TIMEOUT, sig: int = signal.SIGTERM) -> int:
        """``sig`` (SIGTERM), then SIGKILL to the whole group after ``timeout``; the status."""
        self.send_signal(sig)
        try:
            return self.wait(timeout)
        except TimeoutError:
            self.kill_group()
            return self.wait(KILL_TIMEOUT)

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def spawn(
    argv: Sequence[str],
    log_path: Path,
    *,
    where: str = "localhost",
    prefix: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    stdout: int | None = None,
) -> Process:
    """Start ``argv`` in a session of its own; stderr (and stdout, unless ``stdout`` is
    ``subprocess.PIPE``) appended to ``log_path``. ``prefix`` runs it through another
    program that execs it in place (``ip netns exec NAME``)."""
    with open(log_path, "ab") as log:
        popen = subprocess.Popen(
            [*prefix, *argv],
            stdin=subprocess.DEVNULL,
            stdout=log if stdout is None else stdout,
            stderr=log,
            env=None if env is None else {**os.environ, **env},
            start_new_session=True,
        )
    return Process(argv, popen, log_path, where)


def as_in_a_terminal() -> None:
    """``preexec_fn`` for a child that must take SIGINT as a terminal's Ctrl-C does, and
    run as a command started from a shell: no signal blocked, SIGINT at its default
    disposition, every CPU allowed -- whatever the test runner's process inherited or
    set (a child inherits a blocked mask, an ignored signal and a CPU pinning through
    exec, and Python then installs no KeyboardInterrupt handler). A runner started as a
    background job of a non-interactive shell (``make test &``, as a CI script may) has
    SIGINT ignored from the start, by POSIX rule: that is how the lab's SIGINT test
    failed only in such full runs."""
    signal.pthread_sigmask(signal.SIG_SETMASK, set())
    for sig in signal.valid_signals():  # an ignored signal stays ignored through exec
        if sig not in (signal.SIGKILL, signal.SIGSTOP) and signal.getsignal(sig) is signal.SIG_IGN:
            signal.signal(sig, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    with contextlib.suppress(OSError):  # (a cpuset may forbid some CPUs)
        os.sched_setaffinity(0, range(os.cpu_count() or 1))


def stopped(pid: int) -> bool:
    """Whether ``pid`` is stopped (state ``T``): a ``SIGSTOP`` is delivered when the
    process next runs, so a signal sent before that may still reach its handler first."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return any(line.startswith("State:\tT") for line in status.splitlines())


def signal_pending(pid: int, sig: int) -> bool:
    """Whether ``sig`` waits to be delivered to ``pid`` (a stopped process keeps it so):
    the thread's or the process's pending set in ``/proc/PID/status``."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    for line in status.splitlines():
        name, _, value = line.partition(":")
        if name in ("SigPnd", "ShdPnd") and int(value, 16) >> (sig - 1) & 1:
            return True
    return False
