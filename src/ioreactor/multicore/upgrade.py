"""The supervisor's binary upgrade (nginx's USR2): a new supervisor, started from the
program on disk now, inherits the listening sockets; the old one retires once the new
one serves.

::

    old supervisor --SIGUSR2--> fork + exec (the same command line, the code on disk
        now) with the listeners at fds 3.. and LISTEN_PID / LISTEN_FDS / LISTEN_FDNAMES
        (socket activation's variables: the new supervisor takes them like systemd's)
        and a pipe at the fd IOREACTOR_UPGRADE_FD names
    new supervisor: its workers ready --"R" on the pipe--> old supervisor: MAINPID=new
        to systemd, its workers retire (stop accepting, finish, exit), it exits
    new supervisor dies before "R" (EOF on the pipe): the old one goes on serving

No connection is refused: the listening sockets stay open throughout (the old workers,
then the new ones, accept on them).
"""

from __future__ import annotations

import os
import signal
import socket
import sys
from collections.abc import Mapping, Sequence

from ioreactor.multicore.signals import CONTROL_SIGNALS
from ioreactor.net.systemd import SD_LISTEN_FDS_START

#: The variable that names the new supervisor's end of the hand-over pipe.
UPGRADE_FD_VARIABLE = "IOREACTOR_UPGRADE_FD"
#: What the new supervisor writes once every worker of its own accepts.
READY = b"R"


def spawn_successor(
    listeners: Sequence[socket.socket], names: Sequence[str], env: Mapping[str, str]
) -> tuple[int, int]:
    """Fork and exec this program's command line with ``listeners`` inherited; returns
    (its pid, the read end of the hand-over pipe). ``env`` adds to the environment."""
    read_end, write_end = os.pipe()
    argv = [sys.executable, *sys.orig_argv[1:]]
    # Blocked across the fork: the child must not run this process's handlers.
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, CONTROL_SIGNALS)
    try:
        pid = os.fork()
        if pid == 0:  # pragma: no cover  (the child execs or dies at once)
            _exec_successor(argv, [s.fileno() for s in listeners], write_end, names, env)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
    os.close(write_end)
    return pid, read_end


def _exec_successor(
    argv: list[str], fds: list[int], write_end: int, names: Sequence[str], env: Mapping[str, str]
) -> None:
    try:
        # The new program starts with default dispositions and nothing blocked (a mask
        # survives exec: its signal handlers would never run).
        signal.set_wakeup_fd(-1)
        for sig in CONTROL_SIGNALS:
            signal.signal(sig, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, ())
        wanted = [*fds, write_end]
        # Out of the way first (a source may sit where another one must go), then into
        # place at 3, 4, ...: dup2 leaves the copies inheritable.
        base = max([*wanted, SD_LISTEN_FDS_START + len(wanted)]) + 1
        parked = [os.dup2(fd, base + i, inheritable=False) for i, fd in enumerate(wanted)]
        for i, fd in enumerate(parked):
            os.dup2(fd, SD_LISTEN_FDS_START + i)
        variables = {
            **os.environ,
            **env,
            "LISTEN_PID": str(os.getpid()),
            "LISTEN_FDS": str(len(fds)),
            "LISTEN_FDNAMES": ":".join(names),
            UPGRADE_FD_VARIABLE: str(SD_LISTEN_FDS_START + len(fds)),
        }
        os.execve(argv[0], argv, variables)
    finally:
        os._exit(127)


class UpgradeHandshake:
    """The new supervisor's side: says ready on the pipe its predecessor gave it."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    @classmethod
    def from_environment(cls) -> UpgradeHandshake | None:
        """The hand-over pipe when this process was started by an upgrade (the variable
        is removed, so workers do not inherit it)."""
        text = os.environ.pop(UPGRADE_FD_VARIABLE, None)
        if text is None or not text.isdigit():
            return None
        fd = int(text)
        os.set_inheritable(fd, False)
        return cls(fd)

    def ready(self) -> None:
        """Every worker accepts: the old supervisor may retire."""
        try:
            os.write(self.fd, READY)
        except OSError:
            pass  # it is gone already: nothing to tell
        self.close()

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
