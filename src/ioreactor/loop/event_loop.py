"""The reactor: one thread, one poller, callbacks for ready fds, timers and queued work.

One iteration of :meth:`EventLoop.run`::

    poll(timeout until the next timer)   <- the only place the loop sleeps
      -> a new wall-clock second?  call_each_second callbacks (the HTTP Date cache)
      -> each ready fd's channel: channel.handle_events(mask)  (loop/channel.py)
      -> due timers
      -> callbacks queued with call_soon / call_soon_threadsafe
      -> flush: every connection that queued output this iteration sends it, once

The last step is the write-coalescing rule of DESIGN.md: whatever a connection writes
during one iteration leaves in one ``send``/``sendmsg``.

Ownership (muduo's ``runInLoop`` rule): a loop's state -- its poller, its channels, its
connections -- is touched only by the thread running it. Another thread hands work over
with :meth:`call_soon_threadsafe` (or :meth:`run_in_loop`), which queues the callback and
wakes the loop through an eventfd (a socketpair where the OS has no eventfd).

No exception escapes the loop: a failing callback is logged and the loop goes on.
"""

from __future__ import annotations

import collections
import concurrent.futures
import logging
import math
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar

from ioreactor.loop.channel import CallbackChannel, Channel
from ioreactor.loop.poller import MAX_EVENTS, READ, EpollPoller, Poller, create_poller
from ioreactor.loop.signal_wakeup import SignalWakeup
from ioreactor.loop.timers import Handle, TimerHandle, TimerQueue

try:
    import cython
except ImportError:  # the pure build runs without Cython installed
    import ioreactor._cython as cython

if not cython.compiled:
    # The compiled build cimports C functions of the same names (loop/csysio.pxd): the
    # same clock and thread number, without a call through Python.
    from threading import get_ident
    from time import monotonic

    if TYPE_CHECKING:  # the compiled build's epoll_wait (loop/cepoll.pxd)
        from ioreactor.loop.cepoll import epoll_events, epoll_wait, ready_fd, ready_mask

#: True in the compiled build (a C constant there).
COMPILED = cython.compiled

log = logging.getLogger("ioreactor.loop")

T = TypeVar("T")

#: Size of the per-loop scratch buffer every socket read lands in first (uvloop uses 256 KiB).
SCRATCH_SIZE = 256 * 1024
#: Default threshold above which one loop iteration is reported as blocked.
SLOW_ITERATION = 0.1
#: How many recent iteration durations the lag statistics keep.
LAG_WINDOW = 1024


class Flushable(Protocol):
    """Anything that queued output during this iteration (a connection, a channel): the
    loop's internal callback, run once at the end of the iteration."""

    def _flush(self) -> None:
        """Hand what was queued this iteration to the kernel (one send)."""


@dataclass(frozen=True)
class LoopLag:
    """How long the loop's iterations took: the time it could not react to new events."""

    iterations: int
    last: float
    max: float
    p99: float
    slow_iterations: int

    @classmethod
    def of(cls, recent: Sequence[float], iterations: int, worst: float, slow: int) -> LoopLag:
        """The statistics of a loop whose last iterations took ``recent`` seconds (oldest
        first), ``worst`` the longest ever, ``slow`` of them above its threshold."""
        ordered = sorted(recent)
        p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] if ordered else 0.0
        last = recent[-1] if recent else 0.0
        return cls(iterations=iterations, last=last, max=worst, p99=p99, slow_iterations=slow)


class _Waker:
    """The thread-safe wakeup: an eventfd, or a socketpair where there is none."""

    def __init__(self) -> None:
        self._pair: tuple[socket.socket, socket.socket] | None = None
        #: wake() runs on any thread, close() on the loop's: without the lock a wake that
        #: read the fd just before close() could write into a file that reused the number.
        #: Reentrant: a signal handler that wakes the loop may run on the main thread
        #: while that thread is inside wake() or close().
        self._lock = threading.RLock()
        if hasattr(os, "eventfd"):
            self.fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
            self.kind = "eventfd"
        else:  # pragma: no cover - non-Linux
            self._pair = socket.socketpair()
            for s in self._pair:
                s.setblocking(False)
            self.fd = self._pair[0].fileno()
            self.kind = "socketpair"

    def wake(self) -> None:
        with self._lock:
            fd = self.fd
            if fd < 0:
                return  # closed: the old fd number may belong to another file by now
            try:
                if self._pair is None:
                    os.eventfd_write(fd, 1)
                else:  # pragma: no cover - non-Linux
                    self._pair[1].send(b"\0")
            except (BlockingIOError, OSError):
                pass  # already signalled (counter or pipe full)

    def drain(self) -> None:
        try:
            if self._pair is None:
                os.eventfd_read(self.fd)
            else:  # pragma: no cover - non-Linux
                while self._pair[0].recv(4096):
                    pass
        except (BlockingIOError, OSError):
            pass

    def close(self) -> None:
        with self._lock:
            fd, self.fd = self.fd, -1
            if self._pair is None:
                os.close(fd)
            else:  # pragma: no cover - non-Linux
                for s in self._pair:
                    s.close()


class EventLoop:
    """A single-threaded reactor.

    ``poller`` is a backend name (``select``, ``poll``, ``epoll``, ``epoll-et``,
    ``uring``, ... -- see :func:`~ioreactor.loop.poller.available_pollers`), a
    :class:`Poller` instance, or None for the best readiness backend of this OS.
    """

    def __init__(
        self,
        poller: str | Poller | None = None,
        *,
        name: str = "loop",
        slow_iteration: float = SLOW_ITERATION,
    ) -> None:
        self.poller: Poller = poller if isinstance(poller, Poller) else create_poller(poller)
        try:
            self._waker = _Waker()
        except BaseException:
            if self.poller is not poller:
                self.poller.close()  # ours (built from a name): not left to the GC
            raise
        #: Channels on an edge-triggered poller must read until EAGAIN on every event.
        self.edge_triggered = self.poller.edge_triggered
        #: The kernel performs the sockets' I/O (io_uring completion mode): the net layer
        #: builds completion-mode connections and acceptors for this loop.
        self.completion_mode = self.poller.completion_mode
        self.name = name
        self.slow_iteration = slow_iteration
        #: Every socket read lands here first; only the bytes received are copied out.
        self.scratch = bytearray(SCRATCH_SIZE)
        self.scratch_view = memoryview(self.scratch)
        #: Connections with output queued this iteration; flushed at its end.
        self.pending_flush: list[Flushable] = []
        #: Loop time when the current iteration's poll returned: a cheap clock for
        #: per-event bookkeeping such as a connection's last activity (no syscall).
        self.now = monotonic()
        #: The channel of each watched fd, by fd number (None: not watched).
        self._handlers: list[Channel | None] = []
        self._watched = 0
        #: The compiled build waits on an epoll poller itself (loop/cepoll.pxd): its fd and
        #: room for the ready events (-1 and None: the poller's poll() is asked).
        self._epoll_fd = -1
        self._epoll_ready: bytearray | None = None
        if COMPILED and type(self.poller) is EpollPoller:
            self._epoll_fd = self.poller.fileno()
            self._epoll_ready = epoll_events(MAX_EVENTS)
        #: Fds unwatched since the current poll returned: the rest of its batch may still
        #: name them, and the number may already belong to a new socket (see run_once).
        self._unwatched: set[int] = set()
        self._ready: collections.deque[Handle] = collections.deque()
        self._timers = TimerQueue()
        self._thread_id = get_ident()
        self._timers.owner_thread = self._thread_id
        self._running = False
        self._stopping = False
        self._closed = False
        self._wake_pending = False
        self.watch(self._waker.fd, READ, self._on_wakeup)
        if self.completion_mode:
            # A batch of completions arrives as the poller's own fd being readable.
            self.watch(self.poller.fileno(), READ, self.poller.dispatch)
        self._pools: dict[str, concurrent.futures.Executor] = {}
        self._signals: dict[int, Any] = {}
        self._signal_wakeup: SignalWakeup | None = None
        self._second_callbacks: list[Handle] = []
        #: Loop time at which the current wall-clock second ends (inf: no callbacks).
        self._second_ends = math.inf
        self._lag_recent: collections.deque[float] = collections.deque(maxlen=LAG_WINDOW)
        self._lag_max = 0.0
        self._iterations = 0
        self._slow_iterations = 0
        self._last_slow_log = 0.0

    def __repr__(self) -> str:
        return f"<EventLoop {self.name} poller={self.poller.name} fds={self._watched}>"

    # -- time and threads -------------------------------------------------------------

    @staticmethod
    def time() -> float:
        """The loop's clock: monotonic seconds."""
        return monotonic()

    def is_in_loop_thread(self) -> bool:
        return self._thread_id == get_ident()

    def assert_in_loop_thread(self) -> None:
        if self._thread_id != get_ident():
            raise RuntimeError(
                f"{self!r} is owned by thread {self._thread_id}; "
                "use call_soon_threadsafe/run_in_loop from other threads"
            )

    @property
    def running(self) -> bool:
        return self._running

    def adopt_thread(self) -> None:
        """Make the calling thread the loop's owner, as :meth:`run` does: for a driver
        that runs the iterations itself with :meth:`run_once` (ioreactor.aio's loop)."""
        self._thread_id = self._timers.owner_thread = get_ident()

    # -- fds --------------------------------------------------------------------------

    def watch(self, fd: int, events: int, callback: Callable[[int], object]) -> None:
        """Call ``callback(mask)`` whenever ``fd`` is ready for ``events``."""
        self.watch_channel(fd, events, CallbackChannel(callback))

    def watch_channel(self, fd: int, events: int, channel: Channel) -> None:
        """Call ``channel.handle_events(mask)`` whenever ``fd`` is ready for ``events``
        (what a connection registers: itself, with no callback object made for it)."""
        handlers = self._handlers
        if fd < len(handlers) and handlers[fd] is not None:
            raise ValueError(f"fd {fd} is already watched by {self!r}")
        self.poller.register(fd, events)
        if fd >= len(handlers):
            handlers.extend([None] * (fd + 1 - len(handlers)))
        handlers[fd] = channel
        self._watched += 1

    def modify(self, fd: int, events: int) -> None:
        """Change the interest set of a watched fd (do it on real transitions only)."""
        self.poller.modify(fd, events)

    def unwatch(self, fd: int) -> None:
        handlers = self._handlers
        if fd < len(handlers) and handlers[fd] is not None:
            handlers[fd] = None
            self._watched -= 1
            self._unwatched.add(fd)
            try:
                self.poller.unregister(fd)
            except (OSError, KeyError, ValueError):
                pass  # fd already closed by its owner: the kernel dropped it from epoll

    def watched_fds(self) -> int:
        return self._watched

    # -- callbacks and timers -----------------------------------------------------------

    def call_soon(self, callback: Callable[..., object], *args: Any) -> Handle:
        """Run ``callback(*args)`` in this loop's thread on the next iteration."""
        handle = Handle(callback, args)
        self._ready.append(handle)
        return handle

    def call_soon_threadsafe(self, callback: Callable[..., object], *args: Any) -> Handle:
        """Like :meth:`call_soon`, callable from any thread: queues and wakes the loop."""
        handle = Handle(callback, args)
        self._ready.append(handle)
        self.wakeup()
        return handle

    def run_in_loop(self, callback: Callable[..., object], *args: Any) -> None:
        """Run now if called from the loop's thread, else queue it there (muduo runInLoop)."""
        if self._thread_id == get_ident():
            callback(*args)
        else:
            self.call_soon_threadsafe(callback, *args)

    def wakeup(self) -> None:
        """Interrupt a blocking poll from any thread."""
        if not self._wake_pending:
            self._wake_pending = True
            self._waker.wake()

    def call_at(self, when: float, callback: Callable[..., object], *args: Any) -> TimerHandle:
        """Run ``callback(*args)`` at loop time ``when``; thread-safe."""
        return self._add_timer(when, callback, args, None)

    def call_later(self, delay: float, callback: Callable[..., object], *args: Any) -> TimerHandle:
        return self._add_timer(self.time() + delay, callback, args, None)

    def call_each_second(self, callback: Callable[..., object], *args: Any) -> Handle:
        """Run ``callback(*args)`` whenever the wall-clock second changes; loop thread only.

        It runs at the start of the first iteration in a new second, before that
        iteration's events (nginx refreshes its cached time the same way), so what it
        caches -- the HTTP ``Date`` -- is the current second for every event the loop
        handles. An idle loop is not woken for it: its next iteration catches up. It
        also runs at the start of the next iteration. Cancel the handle to stop it.
        """
        handle = Handle(callback, args)
        self._second_callbacks.append(handle)
        self._second_ends = -math.inf
        return handle

    def _new_second(self, now: float) -> None:
        wall = time.time()
        callbacks = self._second_callbacks
        callbacks[:] = [handle for handle in callbacks if not handle.cancelled]
        self._second_ends = now + 1.0 - wall % 1.0 if callbacks else math.inf
        for handle in callbacks:
            self._run_handle(handle)

    def call_every(
        self, interval: float, callback: Callable[..., object], *args: Any
    ) -> TimerHandle:
        """Run ``callback(*args)`` every ``interval`` seconds until the handle is cancelled."""
        if interval <= 0:
            raise ValueError(f"call_every interval must be > 0, got {interval}")
        return self._add_timer(self.time() + interval, callback, args, interval)

    def _add_timer(
        self,
        when: float,
        callback: Callable[..., object],
        args: tuple[Any, ...],
        interval: float | None,
    ) -> TimerHandle:
        handle = TimerHandle(when, callback, args, self._timers, interval)
        if self._thread_id == get_ident():
            self._timers.add(handle)
        else:
            self.call_soon_threadsafe(self._timers.add, handle)
        return handle

    # -- worker pools -------------------------------------------------------------------

    def run_in_pool(
        self,
        fn: Callable[..., T],
        *args: Any,
        on_done: Callable[[concurrent.futures.Future[T]], object] | None = None,
        kind: Literal["thread", "process"] = "thread",
    ) -> concurrent.futures.Future[T]:
        """Run ``fn(*args)`` in a worker pool; ``on_done(future)`` then runs on this loop.

        The course's decode / compute / encode split: the loop decodes, the pool computes
        (blocking or CPU-bound work that must not stall the loop), and the result comes
        back to the connection's own loop thread for encoding and sending. ``kind="process"``
        uses a process pool for CPU-bound work under the GIL (``fn`` must be picklable).
        """
        pool = self._pools.get(kind)
        if pool is None:
            if kind == "process":
                pool = concurrent.futures.ProcessPoolExecutor()
            else:
                pool = concurrent.futures.ThreadPoolExecutor(thread_name_prefix=f"{self.name}-pool")
            self._pools[kind] = pool
        future = pool.submit(fn, *args)
        if on_done is not None:
            callback = on_done
            future.add_done_callback(lambda f: self.call_soon_threadsafe(callback, f))
        return future

    # -- signals --------------------------------------------------------------------------

    def add_signal_handler(self, sig: int, callback: Callable[..., object], *args: Any) -> None:
        """Run ``callback(*args)`` on this loop when ``sig`` arrives (main thread only).

        The first handler also makes every signal wake this loop's poll
        (:class:`~ioreactor.loop.signal_wakeup.SignalWakeup`) until the last is removed.
        """

        def _handler(signum: int, frame: object) -> None:
            self.call_soon_threadsafe(callback, *args)

        previous = signal.signal(sig, _handler)
        self._signals.setdefault(sig, previous)
        if self._signal_wakeup is None:
            self._signal_wakeup = SignalWakeup(self)

    def remove_signal_handler(self, sig: int) -> None:
        if sig in self._signals:
            signal.signal(sig, self._signals.pop(sig))
        if not self._signals and self._signal_wakeup is not None:
            self._signal_wakeup.close()
            self._signal_wakeup = None

    # -- running --------------------------------------------------------------------------

    def run(self) -> None:
        """Run until :meth:`stop`; the calling thread becomes the loop's owner."""
        if self._running:
            raise RuntimeError(f"{self!r} is already running")
        if self._closed:
            raise RuntimeError(f"{self!r} is closed")
        self._thread_id = self._timers.owner_thread = get_ident()
        self._running = True
        try:
            while not self._stopping:
                self.run_once()
        finally:
            # Reset on the way out, not on the way in: a stop() issued before run()
            # began (from a thread that started the loop a moment ago) still counts.
            self._stopping = False
            self._running = False

    def stop(self) -> None:
        """Make :meth:`run` return after the current iteration; thread-safe.

        A stop() before :meth:`run` starts makes that run return at once.
        """
        self._stopping = True
        self.wakeup()

    def run_once(self, timeout: float | None = None) -> None:
        """One iteration: poll, dispatch, timers, queued callbacks, flush.

        ``timeout`` caps the poll (None: until the next timer, or forever).
        """
        if self._ready or self.pending_flush:
            # Work is waiting (output queued outside an iteration counts): poll, don't sleep.
            wait: float | None = 0.0
        else:
            heap = self._timers._heap
            if not heap:
                deadline = None
            elif heap[0][2].cancelled:
                deadline = self._timers.next_deadline()
            else:
                deadline = heap[0][0]
            wait = None if deadline is None else max(0.0, deadline - monotonic())
            if timeout is not None and (wait is None or wait > timeout):
                wait = timeout
        epoll_ready = self._epoll_ready
        count = 0
        if COMPILED and epoll_ready is not None:
            count = epoll_wait(self._epoll_fd, epoll_ready, wait)
        else:
            events = self.poller.poll(wait)
        self.now = start = monotonic()
        if start >= self._second_ends:
            self._new_second(start)
        if self._unwatched:
            self._unwatched.clear()
        if COMPILED and epoll_ready is not None:
            for i in range(count):  # the events read from the C array (cepoll.pxd)
                self._dispatch(ready_fd(epoll_ready, i), ready_mask(epoll_ready, i))
        else:
            handlers = self._handlers
            unwatched = self._unwatched
            for fd, mask in events:
                # _dispatch(fd, mask), inlined: a Python call per event costs the pure
                # build 6% per echoed message (15.3k -> 16.2k instructions, callgrind),
                # one index loop over both event sources 5% (21.4k -> 22.5k, 1 connection).
                if unwatched and fd in unwatched:
                    continue
                channel = handlers[fd] if fd < len(handlers) else None
                if channel is not None:
                    try:
                        channel.handle_events(mask)
                    except Exception:
                        log.exception("%r: unhandled error in the handler of fd %d", self, fd)
        heap = self._timers._heap
        if heap and heap[0][0] <= start:
            for timer in self._timers.pop_due(monotonic()):
                if not timer.cancelled:
                    self._run_handle(timer)
        ready = self._ready
        if ready:
            for _ in range(len(ready)):
                handle = ready.popleft()
                if not handle.cancelled:
                    self._run_handle(handle)
        if self.pending_flush:
            self.flush()
        busy = monotonic() - start
        self._iterations += 1
        self._lag_recent.append(busy)
        if busy > self._lag_max:
            self._lag_max = busy
        if busy > self.slow_iteration:
            self._report_slow(busy)

    def _dispatch(self, fd: int, mask: int) -> None:
        """Tell a ready fd's channel (in C: a compiled connection's method directly)."""
        unwatched = self._unwatched
        if unwatched and fd in unwatched:
            # Unwatched by a callback earlier in this batch (and perhaps watched again for
            # a new socket that got the same number): the event was for the old one.
            return
        handlers = self._handlers
        channel = handlers[fd] if fd < len(handlers) else None
        if channel is not None:
            try:
                channel.handle_events(mask)
            except Exception:
                log.exception("%r: unhandled error in the handler of fd %d", self, fd)

    def flush(self) -> None:
        """Send what every connection queued this iteration (one send each)."""
        pending = self.pending_flush
        i = 0
        while i < len(pending):  # a flush may queue more (on_write_complete sends)
            try:
                pending[i]._flush()
            except Exception:
                log.exception("%r: unhandled error while flushing %r", self, pending[i])
            i += 1
        pending.clear()

    def _run_handle(self, handle: Handle) -> None:
        try:
            handle.run()
        except Exception:
            log.exception("%r: unhandled error in callback %r", self, handle)

    def _on_wakeup(self, events: int) -> None:
        # Drain first, then re-arm: a wakeup that lands in between finds the flag still
        # set and skips its write, but its callback is already queued and runs in this
        # iteration. Re-arming first would let the drain swallow that write and leave
        # the flag set with nothing to wake the loop ever again.
        self._waker.drain()
        self._wake_pending = False

    def _report_slow(self, busy: float) -> None:
        self._slow_iterations += 1
        now = monotonic()
        if now - self._last_slow_log >= 1.0:
            self._last_slow_log = now
            log.warning(
                "%r: event loop blocked for %.1f ms in one iteration (threshold %.1f ms); "
                "a callback is doing blocking work: move it to run_in_pool()",
                self,
                busy * 1000,
                self.slow_iteration * 1000,
            )

    def lag(self) -> LoopLag:
        """Iteration-time statistics over the last ``LAG_WINDOW`` iterations."""
        return LoopLag.of(self._lag_recent, self._iterations, self._lag_max, self._slow_iterations)

    def close(self) -> None:
        """Release the poller, the waker and the pools. The loop must not be running."""
        if self._running:
            raise RuntimeError("cannot close a running loop")
        if self._closed:
            return
        self._closed = True
        for sig in list(self._signals):
            self.remove_signal_handler(sig)
        for pool in self._pools.values():
            pool.shutdown(wait=False, cancel_futures=True)
        self.unwatch(self._waker.fd)
        self._waker.close()
        self.poller.close()
