"""procstat on real process trees: a busy child is charged to its parent's tree."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator

import pytest

from ioreactor_tools.bench.procstat import (
    process_cpu_seconds,
    process_fds,
    process_rss_bytes,
    sample_tree,
    tree_pids,
)

BUSY_SECONDS = 0.5

# The child burns BUSY_SECONDS of CPU, then either stays (blocked on stdin) or exits.
PARENT = textwrap.dedent(
    """
    import subprocess, sys
    child = subprocess.Popen([sys.executable, "-c", '''
    import sys, time
    start = time.process_time()
    while time.process_time() - start < {busy}:
        pass
    if {stay}:
        sys.stdin.read()
    '''], stdin=subprocess.PIPE if {stay} else None)
    if not {stay}:
        child.wait()
    sys.stdin.read()
    """
)


@pytest.fixture
def spawn() -> Iterator[Callable[[bool], subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []

    def _spawn(child_stays: bool) -> subprocess.Popen[bytes]:
        code = PARENT.format(busy=BUSY_SECONDS, stay=child_stays)
        proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE)
        procs.append(proc)
        return proc

    yield _spawn
    for proc in procs:
        for pid in reversed(tree_pids(proc.pid)):
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass
        proc.wait(30)


def wait_for(predicate: Callable[[], bool], timeout: float = 45.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_busy_live_child_is_counted_in_the_tree(spawn: Callable[[bool], subprocess.Popen[bytes]]):
    root = spawn(True).pid
    assert wait_for(lambda: len(tree_pids(root)) == 2)
    child = tree_pids(root)[1]
    assert wait_for(lambda: process_cpu_seconds(child) >= BUSY_SECONDS * 0.8)
    sample = sample_tree(root)
    assert sample.pids == (root, child)
    # The root only started a child: most of the tree's CPU is the child's (to within
    # one clock tick: /proc counts in 10 ms ticks, and float subtraction rounds).
    tick = 1 / os.sysconf("SC_CLK_TCK")
    assert sample.cpu_seconds - process_cpu_seconds(root) >= BUSY_SECONDS * 0.8 - tick
    assert sample.rss_bytes > process_rss_bytes(root) > 0
    assert sample.fds >= process_fds(root) + 3


def test_reaped_child_stays_counted(spawn: Callable[[bool], subprocess.Popen[bytes]]):
    root = spawn(False).pid
    assert wait_for(lambda: len(tree_pids(root)) == 2)
    before = sample_tree(root)
    # The child burns its CPU, exits and is waited for: it leaves the tree but its CPU
    # moves into the parent's cutime/cstime.
    assert wait_for(lambda: tree_pids(root) == [root])
    after = sample_tree(root)
    assert after.pids == (root,)
    assert after.cpu_seconds - before.cpu_seconds >= BUSY_SECONDS * 0.5
    assert after.cpu_seconds >= BUSY_SECONDS * 0.8


def test_gone_process_reads_as_empty():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait(30)
    assert tree_pids(proc.pid) == []
    assert process_cpu_seconds(proc.pid) == 0.0
    assert sample_tree(proc.pid).pids == ()
