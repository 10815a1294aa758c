"""CPU time, memory and open fds of a process and all its descendants, from ``/proc``.

A server may fork workers, so a benchmark charges the whole *tree* rooted at the server's
pid. The tree is found by scanning ``/proc/*/stat`` for parent pids (the
``/proc/PID/task/TID/children`` file needs a kernel option this machine may lack).

CPU accounting: each live process contributes ``utime + stime`` (all its threads) plus
``cutime + cstime`` (the CPU of children it has already reaped, as ``times(2)`` counts it).
So a worker that exits between two samples is still counted once its parent reaps it; a
worker that appears between two samples starts from zero. Only a descendant that exits
and is never waited for (its parent ignores SIGCHLD) loses its time: servers reap.
The resolution is one clock tick (``SC_CLK_TCK``, usually 10 ms): measure seconds, not
milliseconds.

RSS is the sum of the members' resident sets (``/proc/PID/statm``); pages shared after a
fork are counted in each process, so for a pre-forked tree it over-states (use it as an
upper bound, or compare like with like).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True)
class TreeSample:
    """One reading of a process tree."""

    pids: tuple[int, ...]
    #: User-mode CPU (the Python code) and kernel-mode CPU (syscalls, the TCP stack).
    user_seconds: float
    system_seconds: float
    rss_bytes: int
    fds: int

    @property
    def cpu_seconds(self) -> float:
        return self.user_seconds + self.system_seconds


def _stat_fields(pid: int) -> list[str] | None:
    """The fields of ``/proc/PID/stat`` after the command name, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    # The command name is in parentheses and may itself contain spaces or ')'.
    return raw[raw.rindex(b")") + 2 :].decode().split()


def _parents() -> dict[int, int]:
    """pid -> parent pid for every process visible in /proc."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat_fields(int(entry))
            if fields is not None:
                parents[int(entry)] = int(fields[1])
    return parents


def tree_pids(root: int) -> list[int]:
    """``root`` and all its live descendants (root first); empty if root is gone."""
    if not os.path.exists(f"/proc/{root}"):
        return []
    children: dict[int, list[int]] = {}
    for pid, ppid in _parents().items():
        children.setdefault(ppid, []).append(pid)
    found = [root]
    i = 0
    while i < len(found):
        found.extend(children.get(found[i], ()))
        i += 1
    return found


def process_cpu_times(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of ``pid`` (all threads) plus its reaped children."""
    fields = _stat_fields(pid)
    if fields is None:
        return 0.0, 0.0
    # After the name: state ppid ... utime(11) stime(12) cutime(13) cstime(14), 0-based.
    user = int(fields[11]) + int(fields[13])
    system = int(fields[12]) + int(fields[14])
    return user / CLOCK_TICKS, system / CLOCK_TICKS


def process_cpu_seconds(pid: int) -> float:
    """CPU of ``pid`` (all threads) plus that of its reaped children; 0.0 if it is gone."""
    return sum(process_cpu_times(pid))


def process_rss_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm", "rb") as f:
            return int(f.read().split()[1]) * PAGE_SIZE
    except (OSError, IndexError, ValueError):
        return 0


def process_fds(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


def sample_tree(root: int, *, count_fds: bool = True) -> TreeSample:
    """Read CPU, RSS and (optionally: listing 20,000 fds costs) open fds of the tree."""
    pids = tree_pids(root)
    times = [process_cpu_times(p) for p in pids]
    return TreeSample(
        pids=tuple(pids),
        user_seconds=sum(user for user, _ in times),
        system_seconds=sum(system for _, system in times),
        rss_bytes=sum(process_rss_bytes(p) for p in pids),
        fds=sum(process_fds(p) for p in pids) if count_fds else 0,
    )
