"""Model 1: blocking I/O, one process per connection (阻塞 IO + 进程).

The parent only accepts and forks; each child serves one connection and exits. The
course's three rules are here: the child closes the listening socket and the parent
closes the connected one (otherwise fork's reference counting leaks both, and the
parent's copy keeps the connection open after the child closes it); and the parent reaps
children in a SIGCHLD handler with a ``waitpid(-1, WNOHANG)`` loop, since one SIGCHLD may
stand for several exits and a child never waited for stays a zombie.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import threading
from types import FrameType
from typing import NoReturn

from ioreactor_tools.models.acceptor import StoppableAcceptor
from ioreactor_tools.models.base import ModelOptions
from ioreactor_tools.models.handlers import HANDLERS, run_handler

log = logging.getLogger(__name__)

_SIGCHLD = {signal.SIGCHLD}


class ProcessPerConnection:
    """Fork a child per accepted connection.

    ``serve`` must run on the main thread (only it can install the SIGCHLD handler) of a
    process with no other busy threads, since fork copies only the calling thread.
    """

    def __init__(self, options: ModelOptions) -> None:
        self._handler = HANDLERS[options.protocol]
        self._acceptor = StoppableAcceptor()
        self._children: set[int] = set()

    def serve(self, listener: socket.socket) -> None:
        if threading.current_thread() is not threading.main_thread():
            raise RuntimeError("the process-per-connection model must serve on the main thread")
        self._acceptor.attach(listener)
        previous = signal.signal(signal.SIGCHLD, self._reap)
        try:
            while (conn := self._acceptor.accept()) is not None:
                self._fork(conn)
        finally:
            signal.signal(signal.SIGCHLD, previous)
            self._terminate_children()
            self._acceptor.close()

    def stop(self) -> None:
        self._acceptor.stop()

    def _fork(self, conn: socket.socket) -> None:
        # SIGCHLD stays blocked until the pid is recorded: a child that exits at once
        # must not be reaped before the parent knows it exists.
        signal.pthread_sigmask(signal.SIG_BLOCK, _SIGCHLD)
        try:
            pid = os.fork()
            if pid == 0:
                self._child(conn)
            self._children.add(pid)
        except OSError as exc:
            log.warning("fork: %s; dropping the connection", exc.strerror)
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, _SIGCHLD)
            conn.close()  # the child holds its own reference

    def _child(self, conn: socket.socket) -> NoReturn:
        status = 1
        try:
            for signum in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT):
                signal.signal(signum, signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, _SIGCHLD)
            self._acceptor.close_in_child()
            run_handler(self._handler, conn)
            status = 0
        finally:
            os._exit(status)

    def _reap(self, signum: int, frame: FrameType | None) -> None:
        """Collect every exited child: signals do not queue, so loop until none is left."""
        while True:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            self._children.discard(pid)

    def _terminate_children(self) -> None:
        """SIGTERM the children still serving and wait for each one.

        Runs with our SIGCHLD handler removed, so an exited child stays a zombie (its pid
        cannot be reused) until the ``waitpid`` here; the suppressions cover a child
        reaped by someone else's ``waitpid(-1)``.
        """
        for pid in self._children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        for pid in self._children:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
        self._children.clear()
