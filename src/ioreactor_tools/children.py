"""The processes a lab or a benchmark starts end with it, however it ends.

Two layers (issue 13: ``timeout 60 ioreactor lab c10k`` left its model server running)::

    lab / bench (main thread)
      SIGTERM, SIGHUP, SIGINT, an exception
        -> unwinds (ioreactor.cli.interrupts): each clean-up stops its child
           (SIGTERM, then SIGKILL to the child's process group)
      SIGKILL, a crash: no clean-up runs
        -> the kernel sends each child SIGTERM (PR_SET_PDEATHSIG, set in the child)

:func:`child_preexec` sets the death signal in a ``subprocess`` child before it execs
(it survives ``exec``, through ``taskset`` too); :func:`die_with_parent` is the first
call of a ``multiprocessing`` child. The kernel sends the signal when the *thread* that
started the child exits: start children from the main thread. Linux only (``prctl``);
elsewhere only the first layer works.

A ``multiprocessing`` child talks to its parent in ``(kind, value)`` messages over a pipe,
and says ``("failed", repr(exc))`` before an exception ends it; :func:`receive` reads one
message on the parent's side and turns a failure or an early exit into an error.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import multiprocessing.connection

#: ``prctl`` option: the signal this process gets when its parent thread exits.
PR_SET_PDEATHSIG = 1
#: What a child gets: SIGTERM, so a server can close its listeners (and remove its Unix
#: socket files) before it goes.
DEATH_SIGNAL = signal.SIGTERM

# Loaded before any fork: a child between fork and exec only calls into it.
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None


def die_with_parent(parent: int | None = None) -> None:
    """Ask the kernel for :data:`DEATH_SIGNAL` when ``parent`` (by default this
    multiprocessing child's parent) exits; if it already did, take the signal now."""
    if _LIBC is None:
        return
    if parent is None:
        import multiprocessing  # only in a multiprocessing child: loaded there anyway

        started_by = multiprocessing.parent_process()
        parent = started_by.pid if started_by is not None and started_by.pid else os.getppid()
    if _LIBC.prctl(PR_SET_PDEATHSIG, DEATH_SIGNAL, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent:  # the parent died before the prctl: nobody will signal
        os.kill(os.getpid(), DEATH_SIGNAL)


def child_preexec(then: Callable[[], None] | None = None) -> Callable[[], None]:
    """A ``preexec_fn`` for ``subprocess.Popen``: the child dies with this process
    (then runs ``then``, e.g. CPU pinning)."""
    parent = os.getpid()

    def preexec() -> None:
        die_with_parent(parent)
        if then is not None:
            then()

    return preexec


def receive(pipe: multiprocessing.connection.Connection, child: str) -> tuple[str, Any]:
    """The next ``(kind, value)`` message from ``child`` (named in errors): its
    ``("failed", error)`` message or its exit before a word raises RuntimeError."""
    try:
        kind, value = pipe.recv()
    except EOFError:
        raise RuntimeError(f"{child} exited early") from None
    if kind == "failed":
        raise RuntimeError(f"{child} failed: {value}")
    return kind, value
