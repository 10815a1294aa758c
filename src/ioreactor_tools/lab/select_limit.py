"""Lab ``select-limit``: select's FD_SETSIZE wall, and what each wait costs per call.

Course: 性能篇_上 "select / poll / epoll" and 性能篇_下 "C10K". select takes bitmaps of
FD_SETSIZE (1,024) bits, so no descriptor numbered 1,024 or higher can be watched (in C,
FD_SET beyond it writes past the array; CPython refuses with ValueError). poll takes an
array and has no such limit; epoll keeps the interest set in the kernel. poll and select
also pay for every watched descriptor on every call, epoll only for the ready ones.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import resource
import select
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from ioreactor.net.sockopt import raise_nofile_limit
from ioreactor_tools.lab.report import Finding, LabReport, Table

FD_SETSIZE = 1024  # glibc's; the kernel's select has no other limit
HEADROOM = 64  # descriptors left for the interpreter and the ready pair


@dataclass(frozen=True, slots=True)
class HighFdResult:
    """Waiting for a readable socket numbered at or above FD_SETSIZE."""

    soft_limit: int
    fd: int | None  # None: the descriptor limit does not reach FD_SETSIZE
    select_low_fd: str
    select_high_fd: str
    poll_high_fd: str
    epoll_high_fd: str


def _ready(wait: Callable[[], object]) -> str:
    """'ready' if the wait reported the fd, 'not ready' if not, or the exception."""
    try:
        return "ready" if wait() else "not ready"
    except (ValueError, OSError) as exc:
        return f"{type(exc).__name__}: {exc}"


def _poll_once(fd: int) -> list[tuple[int, int]]:
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return poller.poll(0)


def _epoll_once(fd: int) -> list[tuple[int, int]]:
    with select.epoll() as ep:
        ep.register(fd, select.EPOLLIN)
        return ep.poll(0)


def high_fd() -> HighFdResult:
    soft = raise_nofile_limit()
    a, b = socket.socketpair()
    with a, b:
        b.send(b"x")  # a is readable
        low = _ready(lambda: select.select([a], [], [], 0)[0])
        if soft <= FD_SETSIZE + HEADROOM:
            return HighFdResult(soft, None, low, "", "", "")
        high = fcntl.fcntl(a.fileno(), fcntl.F_DUPFD, FD_SETSIZE)  # lowest free fd >= 1024
        try:
            return HighFdResult(
                soft,
                high,
                low,
                select_high_fd=_ready(lambda: select.select([high], [], [], 0)[0]),
                poll_high_fd=_ready(lambda: _poll_once(high)),
                epoll_high_fd=_ready(lambda: _epoll_once(high)),
            )
        finally:
            os.close(high)


@dataclass(frozen=True, slots=True)
class WaitCost:
    """Microseconds per zero-timeout wait over ``watched`` descriptors, one ready."""

    watched: int
    select_us: float | None  # None: impossible (descriptors above FD_SETSIZE)
    poll_us: float
    epoll_us: float


@contextlib.contextmanager
def _idle_descriptors(count: int) -> Iterator[list[int]]:
    """``count`` descriptors of one idle socket (dups are cheap and never ready)."""
    idle, other = socket.socketpair()
    fds = [os.dup(idle.fileno()) for _ in range(count)]
    try:
        yield fds
    finally:
        for fd in fds:
            os.close(fd)
        idle.close()
        other.close()


def _per_call_us(wait: Callable[[], object], calls: int) -> float:
    """Fastest of ``calls`` timed waits: a preemption on a busy machine only ever adds
    time, so the minimum is the call's own cost (a median still moves when more than
    half the calls are preempted, as on a loaded 2-core machine)."""
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        wait()
        times.append(time.perf_counter() - start)
    return min(times) * 1e6


def wait_cost(watched: int, calls: int) -> WaitCost:
    ready, writer = socket.socketpair()
    with ready, writer, _idle_descriptors(watched - 1) as idle:
        writer.send(b"x")
        fds = [*idle, ready.fileno()]
        fits = max(fds) < FD_SETSIZE
        select_us = _per_call_us(lambda: select.select(fds, [], [], 0), calls) if fits else None
        poller = select.poll()
        for fd in fds:
            poller.register(fd, select.POLLIN)
        with select.epoll() as ep:
            for fd in fds:
                ep.register(fd, select.EPOLLIN)
            return WaitCost(
                watched,
                select_us,
                _per_call_us(lambda: poller.poll(0), calls),
                _per_call_us(lambda: ep.poll(0), calls),
            )


@dataclass(frozen=True, slots=True)
class SelectLimitResult:
    high: HighFdResult
    costs: list[WaitCost]
    skipped_sizes: list[int]  # beyond the descriptor limit


def run(sizes: tuple[int, ...] = (100, 1000, 10000), calls: int = 200) -> SelectLimitResult:
    result = high_fd()
    budget = resource.getrlimit(resource.RLIMIT_NOFILE)[0] - HEADROOM
    costs = [wait_cost(n, calls) for n in sizes if n <= budget]
    return SelectLimitResult(result, costs, [n for n in sizes if n > budget])


def report(result: SelectLimitResult) -> LabReport:
    h = result.high
    rep = LabReport("select's FD_SETSIZE vs poll and epoll", "性能篇_上 select/poll/epoll")
    rep.findings.append(
        Finding(
            "select on a readable socket with a low descriptor",
            h.select_low_fd,
            "select works for descriptors below FD_SETSIZE (1024)",
            h.select_low_fd == "ready",
        )
    )
    if h.fd is None:
        rep.findings.append(
            Finding(
                "select on a descriptor >= FD_SETSIZE",
                f"not observed: the open-file limit is {h.soft_limit}",
                "select cannot watch descriptors >= 1024",
                None,
            )
        )
        rep.notes.append(
            f"RLIMIT_NOFILE's hard limit ({h.soft_limit}) does not reach past FD_SETSIZE, and "
            "only a privileged process may raise it: the high-descriptor case was skipped."
        )
    else:
        rep.findings.append(
            Finding(
                f"select on the same socket as descriptor {h.fd}",
                h.select_high_fd,
                "select cannot watch descriptors >= FD_SETSIZE (in C: memory corruption)",
                h.select_high_fd.startswith("ValueError"),
            )
        )
        rep.findings.append(
            Finding(
                f"poll and epoll on descriptor {h.fd}",
                f"poll: {h.poll_high_fd}; epoll: {h.epoll_high_fd}",
                "poll (an array) and epoll (a kernel set) have no such limit",
                h.poll_high_fd == "ready" and h.epoll_high_fd == "ready",
            )
        )
    if result.costs:
        small, large = result.costs[0], result.costs[-1]
        rep.findings.append(
            Finding(
                f"cost per call, {small.watched} -> {large.watched} watched, one ready",
                f"poll {small.poll_us:.1f} -> {large.poll_us:.1f} µs; "
                f"epoll {small.epoll_us:.1f} -> {large.epoll_us:.1f} µs",
                "select/poll scan every descriptor each call; epoll returns only ready ones",
                large.poll_us > 5 * small.poll_us and large.epoll_us < 3 * small.epoll_us,
            )
        )
        rep.tables.append(
            Table(
                "µs per zero-timeout wait, median (one descriptor ready)",
                ("watched", "select", "poll", "epoll"),
                tuple(
                    (
                        str(c.watched),
                        f"{c.select_us:.1f}" if c.select_us is not None else "impossible (>= 1024)",
                        f"{c.poll_us:.1f}",
                        f"{c.epoll_us:.1f}",
                    )
                    for c in result.costs
                ),
            )
        )
    if result.skipped_sizes:
        rep.notes.append(
            f"Sizes {result.skipped_sizes} exceed the open-file limit and were not measured."
        )
    return rep
