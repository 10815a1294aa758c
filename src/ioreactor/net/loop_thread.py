"""Event loops on their own threads: muduo's EventLoopThread and EventLoopThreadPool.

The main-sub reactor of the course::

    base loop (caller's thread)      accepts; hands each socket to a sub-loop
      |-- sub-loop 0 (thread io-0)   owns its connections for their whole life
      |-- sub-loop 1 (thread io-1)
      ...

Each loop is created *inside* its thread, so its owner is that thread from the first
instruction; other threads reach it only through ``run_in_loop``/``call_soon_threadsafe``
(its queue and eventfd wakeup), never by touching its poller.

Sub-loop threads block the asynchronous signals. CPython runs Python signal handlers on
the main thread only; a SIGTERM the kernel delivered to a sub-loop thread would sit
there until the main loop happened to wake, so the main thread must be the one to get it.

On CPython the sub-loops take turns on the GIL: they keep a blocking callback from
stalling accepts and scale on free-threaded builds, but cores are used by worker
processes (:mod:`ioreactor.multicore`).
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from typing import Protocol

from ioreactor.loop.backends import new_loop
from ioreactor.loop.event_loop import EventLoop

log = logging.getLogger("ioreactor.loop_thread")


class LoopFactory(Protocol):
    """Builds a loop in the calling thread: ``factory(name="io-0")``."""

    def __call__(self, *, name: str) -> EventLoop: ...


#: How long :meth:`EventLoopThread.stop` waits for the thread to finish.
STOP_TIMEOUT = 10.0
#: How long :meth:`EventLoopThread.start` waits for the loop to come up.
START_TIMEOUT = 10.0
#: Signals a loop thread never takes: all but the ones a fault raises in the thread itself.
THREAD_BLOCKED_SIGNALS = frozenset(signal.valid_signals()) - {
    signal.SIGSEGV,
    signal.SIGBUS,
    signal.SIGFPE,
    signal.SIGILL,
    signal.SIGABRT,
}


class EventLoopThread:
    """One thread running one :class:`EventLoop` it created itself.

    ``on_start(loop)`` runs in the new thread before the loop starts (muduo's
    ThreadInitCallback): the place for per-loop state such as caches or timers.
    ``loop_factory(name=...)`` builds the loop (default: ``EventLoop(poller)``), for loop
    classes with their own constructor such as a completion-mode loop.
    """

    def __init__(
        self,
        name: str = "io",
        *,
        poller: str | None = None,
        on_start: Callable[[EventLoop], object] | None = None,
        loop_factory: LoopFactory | None = None,
    ) -> None:
        self.name = name
        self.poller = poller
        self.on_start = on_start
        self.loop_factory = loop_factory
        self.thread = threading.Thread(target=self._thread_main, name=name, daemon=True)
        self._loop: EventLoop | None = None
        self._ready = threading.Event()
        self._start_error: BaseException | None = None

    def __repr__(self) -> str:
        return f"<EventLoopThread {self.name} alive={self.thread.is_alive()}>"

    @property
    def loop(self) -> EventLoop:
        if self._loop is None:
            raise RuntimeError(f"{self!r} is not started")
        return self._loop

    def start(self) -> EventLoop:
        """Start the thread and return its loop once the loop exists (muduo startLoop)."""
        self.thread.start()
        if not self._ready.wait(START_TIMEOUT):
            raise TimeoutError(f"{self!r}: loop did not start within {START_TIMEOUT} s")
        if self._start_error is not None:
            raise RuntimeError(f"{self!r} failed to start") from self._start_error
        return self.loop

    def _thread_main(self) -> None:
        signal.pthread_sigmask(signal.SIG_BLOCK, THREAD_BLOCKED_SIGNALS)
        try:
            if self.loop_factory is not None:
                loop = self.loop_factory(name=self.name)
            else:
                loop = new_loop(self.poller, name=self.name)
        except BaseException as exc:
            self._start_error = exc
            self._ready.set()
            return
        try:
            if self.on_start is not None:
                self.on_start(loop)
        except BaseException as exc:
            loop.close()  # its waker and poller fds: nobody else holds the loop
            self._start_error = exc
            self._ready.set()
            return
        self._loop = loop
        self._ready.set()
        try:
            loop.run()
        finally:
            loop.close()

    def request_stop(self) -> None:
        """Ask the loop to stop after the callbacks already queued to it; any thread.

        The request goes through the loop's queue, so work handed over before this call
        (closing connections, say) still runs first.
        """
        if self._loop is not None and self.thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)

    def join(self, timeout: float = STOP_TIMEOUT) -> None:
        if self.thread.is_alive():
            self.thread.join(timeout)
            if self.thread.is_alive():
                log.warning("%r did not stop within %.1f s (a callback is blocking)", self, timeout)

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """:meth:`request_stop` and :meth:`join`."""
        self.request_stop()
        self.join(timeout)


class EventLoopThreadPool:
    """``num_threads`` sub-loops for a base loop; with 0 threads the base loop does it all."""

    def __init__(
        self,
        base_loop: EventLoop,
        num_threads: int,
        *,
        name: str = "io",
        poller: str | None = None,
        on_start: Callable[[EventLoop], object] | None = None,
        loop_factory: LoopFactory | None = None,
    ) -> None:
        if num_threads < 0:
            raise ValueError(f"num_threads must be >= 0, got {num_threads}")
        self.base_loop = base_loop
        self.num_threads = num_threads
        self.name = name
        self.poller = poller if poller is not None else base_loop.poller.name
        self.on_start = on_start
        self.loop_factory = loop_factory
        self.threads: list[EventLoopThread] = []
        self._loops: list[EventLoop] = []
        self._next = 0

    def __repr__(self) -> str:
        return f"<EventLoopThreadPool {self.name} threads={len(self.threads)}>"

    def start(self) -> EventLoopThreadPool:
        """Start every thread; returns once all their loops exist."""
        if self.threads:
            return self
        try:
            for i in range(self.num_threads):
                thread = EventLoopThread(
                    f"{self.name}-{i}",
                    poller=self.poller,
                    on_start=self.on_start,
                    loop_factory=self.loop_factory,
                )
                self.threads.append(thread)
                self._loops.append(thread.start())
        except BaseException:
            self.stop()
            raise
        return self

    @property
    def loops(self) -> list[EventLoop]:
        """The loops that serve work: the sub-loops, or the base loop when there are none."""
        return list(self._loops) if self._loops else [self.base_loop]

    def next_loop(self) -> EventLoop:
        """Round-robin over the sub-loops (base loop thread only)."""
        loops = self._loops
        if not loops:
            return self.base_loop
        loop = loops[self._next]
        self._next = (self._next + 1) % len(loops)
        return loop

    def loop_for_hash(self, code: int) -> EventLoop:
        """The same sub-loop for the same ``code`` (affinity, e.g. by peer address)."""
        loops = self._loops
        return loops[code % len(loops)] if loops else self.base_loop

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Stop every sub-loop (after the work already queued to it) and join the threads."""
        for thread in self.threads:
            thread.request_stop()
        for thread in self.threads:
            thread.join(timeout)
        self.threads.clear()
        self._loops.clear()
