"""The threads that run a WSGI application: a fixed pool of daemon threads, FIFO, with
jobs that can be withdrawn while they wait.

Data flow::

    loop thread --submit(job)--> SimpleQueue --a pool thread: claim(job)--> job.run()
    loop thread --withdraw(job)--> True while the job still waits (it never runs)

Why not the loop's ``run_in_pool`` (a ``ThreadPoolExecutor``): its threads are joined
when the interpreter exits, so one application call that never returns would keep a
worker process alive forever after SIGTERM; a job waiting in an executor cannot be told
from a running one without racing it; and a ``Future`` per request is an allocation and a
callback hop the application's answer does not need (it posts itself to the loop). The
threads here are daemons: a process that is done serving exits even while an application
call hangs (the dispatcher has answered its client 503 by then).
"""

from __future__ import annotations

import logging
import queue
import threading
from typing import Final

log = logging.getLogger("ioreactor.http.wsgi")

#: Where a :class:`PoolJob` stands: waiting for a thread, running, or withdrawn.
WAITING: Final = 0
RUNNING: Final = 1
WITHDRAWN: Final = 2


class PoolJob:
    """Work for the pool: :meth:`run` is called on a pool thread, at most once."""

    __slots__ = ("state",)

    def __init__(self) -> None:
        self.state = WAITING

    def run(self) -> None:  # pragma: no cover - the dispatcher's job overrides it
        raise NotImplementedError


class WorkerPool:
    """``threads`` daemon threads running :class:`PoolJob` objects in submission order.

    The threads start on the first :meth:`submit` (after a worker process forked, never
    before). ``busy`` counts the jobs running now.
    """

    def __init__(self, threads: int, name: str = "wsgi") -> None:
        if threads < 1:
            raise ValueError(f"a pool needs at least one thread, got {threads}")
        self.threads = threads
        self.name = name
        self.busy = 0
        self._jobs: queue.SimpleQueue[PoolJob | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._started: list[threading.Thread] = []
        self._closed = False

    def __repr__(self) -> str:
        return f"<WorkerPool {self.name} threads={self.threads} busy={self.busy}>"

    def submit(self, job: PoolJob) -> None:
        """Queue ``job``; a free thread runs it (any thread may call this)."""
        if self._closed:
            raise RuntimeError("the pool is closed")
        if len(self._started) < self.threads:
            self._start_thread()
        self._jobs.put(job)

    def withdraw(self, job: PoolJob) -> bool:
        """Take back ``job`` if no thread has claimed it yet; True if it will never run."""
        with self._lock:
            if job.state == WAITING:
                job.state = WITHDRAWN
                return True
            return False

    def close(self) -> None:
        """Let the threads end once the jobs queued before this are done (no join: a
        thread stuck in an application call is a daemon and dies with the process)."""
        if self._closed:
            return
        self._closed = True
        for _ in self._started:
            self._jobs.put(None)

    def _start_thread(self) -> None:
        with self._lock:
            if len(self._started) >= self.threads:
                return
            thread = threading.Thread(
                target=self._work, name=f"{self.name}-{len(self._started)}", daemon=True
            )
            self._started.append(thread)
        thread.start()

    def _work(self) -> None:
        jobs = self._jobs
        lock = self._lock
        while True:
            job = jobs.get()
            if job is None:
                return
            with lock:
                if job.state != WAITING:
                    continue  # withdrawn: answered already
                job.state = RUNNING
                self.busy += 1
            try:
                job.run()
            except BaseException:  # a job answers its own errors; this is a bug of ours
                log.exception("%r: a job failed outside the application", self)
            finally:
                with lock:
                    self.busy -= 1
