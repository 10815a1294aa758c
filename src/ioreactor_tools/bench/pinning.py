"""Pin the server to one core and the load to another; run a server as a subprocess.

The method of every ``ioreactor bench`` command: the server under test runs alone on
core 0 (``taskset -c 0``), the load generator on core 1, so the server's CPU time is its
own and the two never fight for one core. :class:`ServerProcess` starts a server command
pinned, in a session of its own, waits until its port accepts connections (a subclass:
until its own sign, as the tests' harness waits for log lines), samples its process tree
and stops it with SIGTERM, then SIGKILL for the whole process group after a grace period;
:class:`ServerWindow` samples it as a load's measured window opens and closes.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Self

from ioreactor_tools.bench.procstat import TreeSample, sample_tree
from ioreactor_tools.children import child_preexec

log = logging.getLogger("ioreactor_tools.bench")

#: Seconds of unmeasured traffic on the same connections before each measured window
#: (connections made, caches warm): every comparison's default.
WARMUP = 1.0
#: How long a server may take to accept its first connection.
READY_TIMEOUT = 15.0
#: How long a server has to exit after SIGTERM before the group gets SIGKILL.
STOP_GRACE = 5.0


#: The ``ioreactor`` command as a server child runs it: this interpreter, logging
#: warnings and worse only (a benchmark's own output stays readable).
IOREACTOR_COMMAND: tuple[str, ...] = (sys.executable, "-m", "ioreactor", "--log-level", "WARNING")


@dataclass(frozen=True)
class CorePlan:
    """Which cores the server and the load run on (None: not pinned)."""

    server: int | None
    load: int | None

    @property
    def pinned(self) -> bool:
        return self.server is not None


def core_plan() -> CorePlan:
    """Server on the first core this process may use, load on the second.

    With a single usable core nothing is pinned (server and load then share it, and the
    report says so through ``CorePlan.pinned``).
    """
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        return CorePlan(None, None)
    return CorePlan(cores[0], cores[1])


def pinned_command(command: Sequence[str], core: int | None) -> list[str]:
    """``command`` prefixed with ``taskset -c CORE`` (unchanged when taskset is missing)."""
    if core is None or shutil.which("taskset") is None:
        return list(command)
    return ["taskset", "-c", str(core), *command]


def pin_current_process(core: int | None) -> None:
    """Pin this process (the load generator) to ``core``; its children inherit it."""
    if core is not None:
        os.sched_setaffinity(0, {core})


@contextlib.contextmanager
def current_process_pinned(core: int | None) -> Iterator[None]:
    """:func:`pin_current_process` for an engine called from a longer-lived process
    (a test, a notebook): the CPUs it had come back at the end."""
    saved = os.sched_getaffinity(0)
    pin_current_process(core)
    try:
        yield
    finally:
        os.sched_setaffinity(0, saved)


def wait_for_port(
    host: str,
    port: int,
    timeout: float = READY_TIMEOUT,
    proc: subprocess.Popen[bytes] | None = None,
) -> None:
    """Return once ``host:port`` accepts a TCP connection; raise if it never does."""
    deadline = time.monotonic() + timeout
    while True:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with status {proc.returncode} before listening")
        try:
            with socket.create_connection((host, port), timeout=1.0):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"nothing accepted on {host}:{port} within {timeout} s"
                ) from None
            time.sleep(0.05)


class ServerProcess:
    """A server command run as a (pinned) subprocess in its own process group.

    ``command`` must make the server listen on ``host:port``. Use as a context manager::

        with ServerProcess(["ioreactor", "echo", "--listen", f"127.0.0.1:{port}"],
                           port=port, core=plan.server) as server:
            before = server.sample()
            ...

    :meth:`start` is :meth:`launch` then :meth:`wait_ready` (the subclass hook: a test's
    server waits for its log lines). ``log_path``: the server's stdout and stderr go to
    that file (a test polls it; a full pipe never blocks the server); otherwise they are
    discarded (``quiet``) or shared with this process. ``preexec`` runs in the child
    before exec (e.g. to lower a limit).
    """

    def __init__(
        self,
        command: Sequence[str],
        *,
        port: int,
        host: str = "127.0.0.1",
        core: int | None = None,
        env: dict[str, str] | None = None,
        ready_timeout: float = READY_TIMEOUT,
        stop_grace: float = STOP_GRACE,
        quiet: bool = True,
        log_path: Path | None = None,
        preexec: Callable[[], None] | None = None,
    ) -> None:
        self.command = list(command)
        self.host = host
        self.port = port
        self.core = core
        self.env = env
        self.ready_timeout = ready_timeout
        self.stop_grace = stop_grace
        self.quiet = quiet
        self.log_path = log_path
        self.preexec = preexec
        self.proc: subprocess.Popen[bytes] | None = None

    def popen(self) -> subprocess.Popen[bytes]:
        """The server's process (running or exited); RuntimeError before :meth:`launch`."""
        if self.proc is None:
            raise RuntimeError("server not started")
        return self.proc

    @property
    def pid(self) -> int:
        return self.popen().pid

    def start(self) -> Self:
        """:meth:`launch`, then wait until it serves; stopped again if it never does."""
        proc = self.launch()
        try:
            self.wait_ready(proc)
        except BaseException:
            self.stop()
            raise
        return self

    def launch(self) -> subprocess.Popen[bytes]:
        """Run the command (pinned, in a new session, dying with this process); no wait."""
        if self.proc is not None:
            raise RuntimeError("server already started")
        command = pinned_command(self.command, self.core)
        core = None if command[0] == "taskset" else self.core  # taskset missing: pin here
        then = self.preexec

        def in_child() -> None:
            if core is not None:
                os.sched_setaffinity(0, {core})
            if then is not None:
                then()

        env = None if self.env is None else {**os.environ, **self.env}
        with contextlib.ExitStack() as files:
            if self.log_path is not None:
                output: int | IO[bytes] | None = files.enter_context(self.log_path.open("wb"))
                errors: int | None = subprocess.STDOUT
            else:
                output = errors = subprocess.DEVNULL if self.quiet else None
            self.proc = subprocess.Popen(
                command,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=errors,
                start_new_session=True,  # its own group: SIGKILL reaches forked workers too
                preexec_fn=child_preexec(in_child),
            )
        return self.proc

    def wait_ready(self, proc: subprocess.Popen[bytes]) -> None:
        """Return once the server serves: here, once ``host:port`` accepts (a subclass
        waits for its own sign); raise if ``proc`` exits or the ready timeout passes."""
        wait_for_port(self.host, self.port, self.ready_timeout, proc)

    def sample(self, *, count_fds: bool = True) -> TreeSample:
        """CPU, RSS and fds of the server's process tree (taskset execs in place)."""
        return sample_tree(self.pid, count_fds=count_fds)

    def signal(self, sig: int) -> None:
        """Send ``sig`` to the server process itself (not to what it forked)."""
        self.popen().send_signal(sig)

    def wait(self, timeout: float) -> int:
        """Its exit status; ``subprocess.TimeoutExpired`` if it still runs after ``timeout``."""
        return self.popen().wait(timeout)

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL to the process group after the grace period; the status
        (None if it never started, or outlived SIGKILL by the grace period too).

        A stopped server (SIGSTOP, a test's or a shell's) is continued first so that it
        takes the SIGTERM."""
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGCONT)
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(self.stop_grace)
            except subprocess.TimeoutExpired:
                log.warning(
                    "%s ignored SIGTERM for %.1f s; killing", self.command[0], self.stop_grace
                )
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # the leader or any worker left behind
        except (ProcessLookupError, PermissionError):
            pass
        try:
            return proc.wait(self.stop_grace)
        except subprocess.TimeoutExpired:
            log.warning("%s outlived SIGKILL by %.1f s", self.command[0], self.stop_grace)
            return None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class ServerWindow:
    """A server's process-tree samples as a load's measured window opens (``before``)
    and closes (``after``): :meth:`open` and :meth:`close` are the load's
    ``on_start``/``on_end``. Only the closing sample counts the fds: the result
    reports what the server holds at the end."""

    before: TreeSample
    after: TreeSample

    def __init__(self, server: ServerProcess) -> None:
        self.server = server

    def open(self) -> None:
        self.before = self.server.sample(count_fds=False)

    def close(self) -> None:
        self.after = self.server.sample()
