"""The scheduling half of ioreactor.aio's loop: callbacks, timers, running, signals, fds.

One iteration of :meth:`LoopCore.run_forever`::

    reactor.run_once(timeout)          poll -> fd callbacks (connections read, accept,
      |                                 add_reader handles) -> the reactor's own timers
      |                                 and callbacks -> flush
      -> due asyncio timers -> ready   (asyncio.TimerHandle heap)
      -> ready asyncio handles         (the ones queued before this point; Task steps,
      |                                 Future callbacks, call_soon)
      -> reactor.flush()               what those callbacks wrote leaves in one send
                                       per connection

``timeout`` is 0 while handles are ready, else the wait until the next asyncio timer
(the reactor shortens it further for its own timers). The reactor is ioreactor's
:class:`~ioreactor.loop.event_loop.EventLoop`, so connections keep its write
coalescing and back-pressure; the handles and timers are asyncio's own classes, so
``TimerHandle.cancel()``, ``Handle._run()`` and the C ``Future``/``Task`` work unchanged.

Signals: a socketpair's write end is ``signal.set_wakeup_fd``; the C-level handler
writes the signal number there, which wakes the poll even when the signal lands just
before it, and the read end's callback queues the Python handler.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextvars
import errno
import heapq
import logging
import os
import signal
import socket
import sys
import threading
import time
import traceback
import warnings
import weakref
from asyncio import events, futures, tasks
from collections.abc import AsyncGenerator, Awaitable, Callable, Coroutine, Generator
from typing import Any, TypeVar

from ioreactor.aio import native
from ioreactor.loop.backends import new_loop
from ioreactor.loop.event_loop import EventLoop, LoopLag
from ioreactor.loop.poller import ERROR, HUP, READ, WRITE

logger = logging.getLogger("asyncio")

T = TypeVar("T")

#: Callbacks slower than this are logged in debug mode (asyncio's default).
SLOW_CALLBACK_DURATION = 0.1
#: Cancelled timers that make the heap be rebuilt, when they are also more than
#: ``CANCELLED_TIMERS_FRACTION`` of it (asyncio's thresholds).
MIN_CANCELLED_TIMERS = 100
CANCELLED_TIMERS_FRACTION = 0.5
#: Seconds shutdown_default_executor() waits for the executor's threads (3.12's default).
THREAD_JOIN_TIMEOUT = 300.0
#: How many recent iteration durations lag() keeps.
LAG_WINDOW = 1024


def _fileobj_to_fd(fileobj: Any) -> int:
    if isinstance(fileobj, int):
        fd = fileobj
    else:
        try:
            fd = int(fileobj.fileno())
        except (AttributeError, TypeError, ValueError):
            raise ValueError(f"Invalid file object: {fileobj!r}") from None
    if fd < 0:
        raise ValueError(f"Invalid file descriptor: {fd}")
    return fd


def _sighandler_noop(signum: int, frame: object) -> None:
    """The Python-level handler: the work is done by the wakeup fd's reader."""


def _format_handle(handle: events.Handle) -> str:
    callback = handle._callback  # type: ignore[attr-defined]
    owner = getattr(callback, "__self__", None)
    if isinstance(owner, tasks.Task):
        return repr(owner)
    return str(handle)


def _ran_now() -> None:
    """The callback of the handle call_soon() returns for a step it ran at once."""


def _run_until_complete_cb(fut: futures.Future[Any]) -> None:
    if not fut.cancelled():
        exc = fut.exception()
        if isinstance(exc, (SystemExit, KeyboardInterrupt)):
            return  # the loop stops by itself: the exception propagates
    fut.get_loop().stop()


class FdWatch:
    """The reader and writer handles of one fd (asyncio: one of each per fd)."""

    __slots__ = ("events", "fd", "loop", "reader", "writer")

    def __init__(self, loop: LoopCore, fd: int) -> None:
        self.loop = loop
        self.fd = fd
        self.reader: events.Handle | None = None
        self.writer: events.Handle | None = None
        self.events = 0

    def dispatch(self, mask: int) -> None:
        """The reactor's callback: run the handles now (asyncio runs them in this
        iteration too). Edge-triggered pollers are re-armed, which reports the fd again
        while it is still ready: add_reader's contract is level-triggered."""
        reader, writer = self.reader, self.writer
        if reader is not None and mask & (READ | ERROR | HUP):
            if reader._cancelled:
                self.loop._remove_watch(self.fd, READ)
            else:
                reader._run()
        if writer is not None and mask & (WRITE | ERROR | HUP):
            if writer._cancelled:
                self.loop._remove_watch(self.fd, WRITE)
            else:
                writer._run()
        reactor = self.loop._reactor
        if reactor.edge_triggered and self.events and self.loop._watches.get(self.fd) is self:
            try:
                reactor.modify(self.fd, self.events)
            except OSError:
                pass


class LoopCore(events.AbstractEventLoop):
    """An asyncio event loop on an ioreactor :class:`EventLoop`: scheduling and fds.

    ``poller``: ``epoll`` (default), ``epoll-et``, ``poll``, ``select``, ``uring``,
    ``uring-poll``, ...; or ``reactor``, an EventLoop built by the caller.
    """

    def __init__(self, poller: str | None = None, *, reactor: EventLoop | None = None) -> None:
        self._reactor: EventLoop = reactor if reactor is not None else new_loop(poller)
        native.register(self._reactor, self)
        self._ready: collections.deque[events.Handle] = collections.deque()
        self._scheduled: list[events.TimerHandle] = []
        self._timer_cancelled_count = 0
        self._stopping = False
        self._closed = False
        self._thread_id: int | None = None
        self._clock_resolution = time.get_clock_info("monotonic").resolution
        self._exception_handler: Callable[[Any, dict[str, Any]], object] | None = None
        self._task_factory: Any = None
        self._default_executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._executor_shutdown_called = False
        self._asyncgens: weakref.WeakSet[AsyncGenerator[Any, Any]] = weakref.WeakSet()
        self._asyncgens_shutdown_called = False
        self._coroutine_origin_tracking_enabled = False
        self._coroutine_origin_tracking_saved_depth: int | None = None
        self._debug = False
        self.set_debug(
            sys.flags.dev_mode
            or (not sys.flags.ignore_environment and bool(os.environ.get("PYTHONASYNCIODEBUG")))
        )
        self.slow_callback_duration = SLOW_CALLBACK_DURATION
        self._current_handle: events.Handle | None = None
        #: The next call_soon() runs its callback at once (see eager_task()), and
        #: returns this handle, already run.
        self._run_now = False
        self._ran_now = events.Handle(_ran_now, (), self)
        self._watches: dict[int, FdWatch] = {}
        self._signal_handlers: dict[int, events.Handle] = {}
        self._signal_pair: tuple[socket.socket, socket.socket] | None = None
        self._lag_recent: collections.deque[float] = collections.deque(maxlen=LAG_WINDOW)
        self._lag_max = 0.0
        self._iterations = 0
        self._slow_iterations = 0

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} poller={self._reactor.poller.name} "
            f"running={self.is_running()} closed={self.is_closed()} debug={self.get_debug()}>"
        )

    @property
    def reactor(self) -> EventLoop:
        """The ioreactor loop underneath: native servers and handlers can share it."""
        return self._reactor

    # -- running and stopping -------------------------------------------------------------

    def _check_closed(self) -> None:
        if self._closed:
            raise RuntimeError("Event loop is closed")

    def _check_running(self) -> None:
        if self.is_running():
            raise RuntimeError("This event loop is already running")
        if events._get_running_loop() is not None:
            raise RuntimeError("Cannot run the event loop while another loop is running")

    def run_forever(self) -> None:
        self._check_closed()
        self._check_running()
        self._set_coroutine_origin_tracking(self._debug)
        old_agen_hooks = sys.get_asyncgen_hooks()
        self._thread_id = threading.get_ident()
        self._reactor.adopt_thread()
        try:
            sys.set_asyncgen_hooks(
                firstiter=self._asyncgen_firstiter_hook,
                finalizer=self._asyncgen_finalizer_hook,
            )
            events._set_running_loop(self)
            while True:
                self._run_once()
                if self._stopping:
                    break
        finally:
            self._stopping = False
            self._thread_id = None
            events._set_running_loop(None)
            self._set_coroutine_origin_tracking(False)
            sys.set_asyncgen_hooks(*old_agen_hooks)

    def run_until_complete(self, future: Awaitable[T]) -> T:  # type: ignore[override]
        self._check_closed()
        self._check_running()
        new_task = not futures.isfuture(future)
        fut: futures.Future[T] = tasks.ensure_future(future, loop=self)
        if new_task:
            # The task is ours: an exception it raises is not "never retrieved".
            fut._log_destroy_pending = False  # type: ignore[attr-defined]
        fut.add_done_callback(_run_until_complete_cb)
        try:
            self.run_forever()
        except BaseException:
            if new_task and fut.done() and not fut.cancelled():
                fut.exception()  # retrieved: the caller gets it raised
            raise
        finally:
            fut.remove_done_callback(_run_until_complete_cb)
        if not fut.done():
            raise RuntimeError("Event loop stopped before Future completed.")
        return fut.result()

    def stop(self) -> None:
        self._stopping = True

    def is_running(self) -> bool:
        return self._thread_id is not None

    def is_closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        if self.is_running():
            raise RuntimeError("Cannot close a running event loop")
        if self._closed:
            return
        if self._debug:
            logger.debug("Close %r", self)
        self._closed = True
        self._ready.clear()
        self._scheduled.clear()
        self._executor_shutdown_called = True
        executor, self._default_executor = self._default_executor, None
        if executor is not None:
            executor.shutdown(wait=False)
        for sig in list(self._signal_handlers):
            self.remove_signal_handler(sig)
        self._close_signal_pair()
        for fd in list(self._watches):
            self._reactor.unwatch(fd)
        self._watches.clear()
        self._reactor.close()

    def __del__(self, _warn: Callable[..., None] = warnings.warn) -> None:
        if not getattr(self, "_closed", True) and not self.is_running():
            _warn(f"unclosed event loop {self!r}", ResourceWarning, source=self)

    def _run_once(self) -> None:
        ready = self._ready
        scheduled = self._scheduled
        if self._timer_cancelled_count > MIN_CANCELLED_TIMERS and (
            self._timer_cancelled_count > len(scheduled) * CANCELLED_TIMERS_FRACTION
        ):
            self._drop_cancelled_timers()
        else:
            while scheduled and scheduled[0]._cancelled:
                self._timer_cancelled_count -= 1
                heapq.heappop(scheduled)._scheduled = False  # type: ignore[attr-defined]
        timeout: float | None
        if ready or self._stopping:
            timeout = 0.0
        elif scheduled:
            timeout = min(max(0.0, scheduled[0]._when - time.monotonic()), 86400.0)  # type: ignore[attr-defined]
        else:
            timeout = None
        reactor = self._reactor
        reactor.run_once(timeout)
        end = time.monotonic() + self._clock_resolution
        while scheduled and scheduled[0]._when < end:  # type: ignore[attr-defined]
            timer = heapq.heappop(scheduled)
            timer._scheduled = False  # type: ignore[attr-defined]
            ready.append(timer)
        if self._debug:
            self._run_ready_debug()
        else:
            for _ in range(len(ready)):
                handle = ready.popleft()
                if not handle._cancelled:
                    handle._run()
        if reactor.pending_flush:
            reactor.flush()
        busy = time.monotonic() - reactor.now
        self._iterations += 1
        self._lag_recent.append(busy)
        if busy > self._lag_max:
            self._lag_max = busy
        if busy > self.slow_callback_duration:
            self._slow_iterations += 1

    def _run_ready_debug(self) -> None:
        ready = self._ready
        for _ in range(len(ready)):
            handle = ready.popleft()
            if handle._cancelled:
                continue
            try:
                self._current_handle = handle
                t0 = time.monotonic()
                handle._run()
                dt = time.monotonic() - t0
                if dt >= self.slow_callback_duration:
                    logger.warning("Executing %s took %.3f seconds", _format_handle(handle), dt)
            finally:
                self._current_handle = None

    def _drop_cancelled_timers(self) -> None:
        live = []
        for handle in self._scheduled:
            if handle._cancelled:
                handle._scheduled = False  # type: ignore[attr-defined]
            else:
                live.append(handle)
        heapq.heapify(live)
        self._scheduled = live
        self._timer_cancelled_count = 0

    def lag(self) -> LoopLag:
        """How long the loop's iterations took (poll return to the end of the ready
        handles): the time it could not react to new events. ``slow_iterations`` counts
        those above ``slow_callback_duration``."""
        return LoopLag.of(self._lag_recent, self._iterations, self._lag_max, self._slow_iterations)

    # -- callbacks and timers -------------------------------------------------------------

    def time(self) -> float:
        return time.monotonic()

    def call_soon(  # type: ignore[override]
        self,
        callback: Callable[..., object],
        *args: Any,
        context: contextvars.Context | None = None,
    ) -> events.Handle:
        if self._closed:
            raise RuntimeError("Event loop is closed")
        if self._debug:
            self._check_thread()
            self._check_callback(callback, "call_soon")
        if self._run_now:  # the first step of an eager_task(): run it, no Handle
            self._run_now = False
            if context is None:
                callback(*args)
            else:
                context.run(callback, *args)
            return self._ran_now  # (the Task ignores what call_soon returns)
        handle = events.Handle(callback, args, self, context)
        self._ready.append(handle)
        return handle

    def call_soon_threadsafe(  # type: ignore[override]
        self,
        callback: Callable[..., object],
        *args: Any,
        context: contextvars.Context | None = None,
    ) -> events.Handle:
        self._check_closed()
        if self._debug:
            self._check_callback(callback, "call_soon_threadsafe")
        handle = events.Handle(callback, args, self, context)
        self._ready.append(handle)
        self._reactor.wakeup()
        return handle

    def call_later(  # type: ignore[override]
        self,
        delay: float,
        callback: Callable[..., object],
        *args: Any,
        context: contextvars.Context | None = None,
    ) -> events.TimerHandle:
        if delay is None:
            raise TypeError("delay must not be None")
        return self.call_at(time.monotonic() + delay, callback, *args, context=context)

    def call_at(  # type: ignore[override]
        self,
        when: float,
        callback: Callable[..., object],
        *args: Any,
        context: contextvars.Context | None = None,
    ) -> events.TimerHandle:
        if when is None:
            raise TypeError("when cannot be None")
        self._check_closed()
        if self._debug:
            self._check_thread()
            self._check_callback(callback, "call_at")
        timer = events.TimerHandle(when, callback, args, self, context)
        heapq.heappush(self._scheduled, timer)
        timer._scheduled = True  # type: ignore[attr-defined]
        return timer

    def _timer_handle_cancelled(self, handle: events.TimerHandle) -> None:
        """TimerHandle.cancel() tells the loop, which rebuilds the heap when it pays."""
        if handle._scheduled:  # type: ignore[attr-defined]
            self._timer_cancelled_count += 1

    def _check_callback(self, callback: Any, method: str) -> None:
        from asyncio import coroutines

        if coroutines.iscoroutine(callback) or coroutines.iscoroutinefunction(callback):
            raise TypeError(f"coroutines cannot be used with {method}()")
        if not callable(callback):
            raise TypeError(f"a callable object was expected by {method}(), got {callback!r}")

    def _check_thread(self) -> None:
        """Debug mode: the loop's non-thread-safe methods called from another thread."""
        if self._thread_id is None:
            return
        if threading.get_ident() != self._thread_id:
            raise RuntimeError(
                "Non-thread-safe operation invoked on an event loop other than the current one"
            )

    def create_future(self) -> futures.Future[Any]:
        return futures.Future(loop=self)

    def eager_task(
        self, coro: Coroutine[Any, Any, T], *, context: contextvars.Context | None = None
    ) -> tasks.Task[T]:
        """A Task whose first step runs now, inside this call, until its coroutine first
        waits or ends: Python 3.12's eager tasks, on 3.11 as well. What a coroutine does
        before it waits (an ASGI "hello", a cached answer) then costs no trip through
        the ready queue and no Handle run later, and ``current_task()`` is the Task all
        along. Called from inside another Task, it is an ordinary Task (steps never
        nest)."""
        self._check_closed()
        if tasks.current_task(self) is None:
            self._run_now = True  # call_soon() runs the step the Task asks for at once
        try:
            return tasks.Task(coro, loop=self, context=context)
        finally:
            self._run_now = False

    def create_task(
        self,
        coro: Coroutine[Any, Any, T] | Generator[Any, None, T],
        *,
        name: str | None = None,
        context: contextvars.Context | None = None,
    ) -> tasks.Task[T]:
        self._check_closed()
        if self._task_factory is None:
            task: tasks.Task[T] = tasks.Task(coro, loop=self, name=name, context=context)
            if task._source_traceback:  # type: ignore[attr-defined]
                del task._source_traceback[-1]  # type: ignore[attr-defined]
        else:
            if context is None:
                task = self._task_factory(self, coro)
            else:
                task = self._task_factory(self, coro, context=context)
            if name is not None:
                task.set_name(name)
        return task

    def set_task_factory(self, factory: Any) -> None:
        if factory is not None and not callable(factory):
            raise TypeError("task factory must be a callable or None")
        self._task_factory = factory

    def get_task_factory(self) -> Any:
        return self._task_factory

    # -- async generators and executors ---------------------------------------------------

    def _asyncgen_finalizer_hook(self, agen: AsyncGenerator[Any, Any]) -> None:
        self._asyncgens.discard(agen)
        if not self.is_closed():
            self.call_soon_threadsafe(self.create_task, agen.aclose())

    def _asyncgen_firstiter_hook(self, agen: AsyncGenerator[Any, Any]) -> None:
        if self._asyncgens_shutdown_called:
            warnings.warn(
                f"asynchronous generator {agen!r} was scheduled after "
                f"loop.shutdown_asyncgens() call",
                ResourceWarning,
                source=self,
                stacklevel=2,
            )
        self._asyncgens.add(agen)

    async def shutdown_asyncgens(self) -> None:
        self._asyncgens_shutdown_called = True
        if not self._asyncgens:
            return
        closing = list(self._asyncgens)
        self._asyncgens.clear()
        results = await tasks.gather(*[ag.aclose() for ag in closing], return_exceptions=True)
        for result, agen in zip(results, closing, strict=True):
            if isinstance(result, Exception):
                self.call_exception_handler(
                    {
                        "message": f"an error occurred during closing of "
                        f"asynchronous generator {agen!r}",
                        "exception": result,
                        "asyncgen": agen,
                    }
                )

    async def shutdown_default_executor(self, timeout: float | None = None) -> None:
        self._executor_shutdown_called = True
        executor = self._default_executor
        if executor is None:
            return
        done = self.create_future()
        thread = threading.Thread(target=self._do_shutdown, args=(executor, done))
        thread.start()
        try:
            await done
        finally:
            thread.join(timeout if timeout is not None else THREAD_JOIN_TIMEOUT)
        if thread.is_alive():
            warnings.warn(
                f"The executor did not finish joining its threads within {timeout} seconds.",
                RuntimeWarning,
                stacklevel=2,
            )
            executor.shutdown(wait=False)

    def _do_shutdown(
        self, executor: concurrent.futures.Executor, done: futures.Future[None]
    ) -> None:
        try:
            executor.shutdown(wait=True)
            if not self.is_closed():
                self.call_soon_threadsafe(futures._set_result_unless_cancelled, done, None)  # type: ignore[attr-defined]
        except Exception as exc:
            if not self.is_closed():
                self.call_soon_threadsafe(done.set_exception, exc)

    def run_in_executor(  # type: ignore[override]
        self, executor: concurrent.futures.Executor | None, func: Callable[..., T], *args: Any
    ) -> futures.Future[T]:
        self._check_closed()
        if self._debug:
            self._check_callback(func, "run_in_executor")
        if executor is None:
            executor = self._default_executor
            if executor is None:
                if self._executor_shutdown_called:
                    raise RuntimeError("Executor shutdown has been called")
                executor = self._default_executor = concurrent.futures.ThreadPoolExecutor(
                    thread_name_prefix="ioreactor.aio"
                )
        return futures.wrap_future(executor.submit(func, *args), loop=self)

    def set_default_executor(self, executor: Any) -> None:
        if not isinstance(executor, concurrent.futures.ThreadPoolExecutor):
            raise TypeError("executor must be ThreadPoolExecutor")
        self._default_executor = executor

    # -- errors and debug ------------------------------------------------------------------

    def get_exception_handler(self) -> Callable[[Any, dict[str, Any]], object] | None:
        return self._exception_handler

    def set_exception_handler(
        self, handler: Callable[[Any, dict[str, Any]], object] | None
    ) -> None:
        if handler is not None and not callable(handler):
            raise TypeError(f"A callable object or None is expected, got {handler!r}")
        self._exception_handler = handler

    def default_exception_handler(self, context: dict[str, Any]) -> None:
        message = context.get("message") or "Unhandled exception in event loop"
        exception = context.get("exception")
        exc_info: Any = (
            (type(exception), exception, exception.__traceback__) if exception else False
        )
        if (
            "source_traceback" not in context
            and self._current_handle is not None
            and self._current_handle._source_traceback  # type: ignore[attr-defined]
        ):
            context["handle_traceback"] = self._current_handle._source_traceback  # type: ignore[attr-defined]
        lines = [message]
        for key in sorted(context):
            if key in {"message", "exception"}:
                continue
            value = context[key]
            if key == "source_traceback":
                value = "Object created at (most recent call last):\n" + (
                    "".join(traceback.format_list(value)).rstrip()
                )
            elif key == "handle_traceback":
                value = "Handle created at (most recent call last):\n" + (
                    "".join(traceback.format_list(value)).rstrip()
                )
            else:
                value = repr(value)
            lines.append(f"{key}: {value}")
        logger.error("\n".join(lines), exc_info=exc_info)

    def call_exception_handler(self, context: dict[str, Any]) -> None:
        if self._exception_handler is None:
            try:
                self.default_exception_handler(context)
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException:
                logger.error("Exception in default exception handler", exc_info=True)
            return
        try:
            self._exception_handler(self, context)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            try:
                self.default_exception_handler(
                    {
                        "message": "Unhandled error in exception handler",
                        "exception": exc,
                        "context": context,
                    }
                )
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException:
                logger.error(
                    "Exception in default exception handler while handling an unexpected "
                    "error in custom exception handler",
                    exc_info=True,
                )

    def get_debug(self) -> bool:
        return self._debug

    def set_debug(self, enabled: bool) -> None:
        self._debug = enabled
        if self.is_running():
            self.call_soon_threadsafe(self._set_coroutine_origin_tracking, enabled)

    def _set_coroutine_origin_tracking(self, enabled: bool) -> None:
        if bool(enabled) == bool(self._coroutine_origin_tracking_enabled):
            return
        if enabled:
            self._coroutine_origin_tracking_saved_depth = sys.get_coroutine_origin_tracking_depth()
            from asyncio import constants

            sys.set_coroutine_origin_tracking_depth(constants.DEBUG_STACK_DEPTH)
        else:
            sys.set_coroutine_origin_tracking_depth(
                self._coroutine_origin_tracking_saved_depth or 0
            )
        self._coroutine_origin_tracking_enabled = enabled

    # -- watching fds: add_reader / add_writer ----------------------------------------------

    def _ensure_fd_no_transport(self, fd: int) -> None:
        """Overridden where transports exist: an fd a transport owns is not for add_reader."""

    def _add_watch(
        self, fd: int, event: int, callback: Callable[..., object], args: tuple[Any, ...]
    ) -> events.Handle:
        self._check_closed()
        handle = events.Handle(callback, args, self, None)
        watch = self._watches.get(fd)
        if watch is None:
            watch = FdWatch(self, fd)
            self._set_handle(watch, event, handle)
            self._reactor.watch(fd, watch.events, watch.dispatch)
            self._watches[fd] = watch
            return handle
        old = watch.reader if event == READ else watch.writer
        self._set_handle(watch, event, handle)
        if old is not None:
            old.cancel()
        else:
            self._modify(watch)
        return handle

    @staticmethod
    def _set_handle(watch: FdWatch, event: int, handle: events.Handle | None) -> None:
        if event == READ:
            watch.reader = handle
        else:
            watch.writer = handle
        watch.events = (READ if watch.reader else 0) | (WRITE if watch.writer else 0)

    def _modify(self, watch: FdWatch) -> None:
        try:
            self._reactor.modify(watch.fd, watch.events)
        except (FileNotFoundError, OSError) as exc:
            if exc.errno not in (errno.ENOENT, errno.EBADF):
                raise
            # The fd was closed (and perhaps reused) without remove_reader(): start afresh.
            self._reactor.unwatch(watch.fd)
            self._reactor.watch(watch.fd, watch.events, watch.dispatch)

    def _remove_watch(self, fd: int, event: int) -> bool:
        if self._closed:
            return False
        watch = self._watches.get(fd)
        if watch is None:
            return False
        old = watch.reader if event == READ else watch.writer
        self._set_handle(watch, event, None)
        if not watch.events:
            del self._watches[fd]
            self._reactor.unwatch(fd)
        elif old is not None:
            self._modify(watch)
        if old is None:
            return False
        old.cancel()
        return True

    def add_reader(self, fd: Any, callback: Callable[..., object], *args: Any) -> None:  # type: ignore[override]
        fileno = _fileobj_to_fd(fd)
        self._ensure_fd_no_transport(fileno)
        self._add_watch(fileno, READ, callback, args)

    def remove_reader(self, fd: Any) -> bool:
        fileno = _fileobj_to_fd(fd)
        self._ensure_fd_no_transport(fileno)
        return self._remove_watch(fileno, READ)

    def add_writer(self, fd: Any, callback: Callable[..., object], *args: Any) -> None:  # type: ignore[override]
        fileno = _fileobj_to_fd(fd)
        self._ensure_fd_no_transport(fileno)
        self._add_watch(fileno, WRITE, callback, args)

    def remove_writer(self, fd: Any) -> bool:
        fileno = _fileobj_to_fd(fd)
        self._ensure_fd_no_transport(fileno)
        return self._remove_watch(fileno, WRITE)

    # -- signals ----------------------------------------------------------------------------

    def _check_signal(self, sig: int) -> None:
        if not isinstance(sig, int):
            raise TypeError(f"sig must be an int, not {sig!r}")
        if sig not in signal.valid_signals():
            raise ValueError(f"invalid signal number {sig}")

    def add_signal_handler(self, sig: int, callback: Callable[..., object], *args: Any) -> None:  # type: ignore[override]
        from asyncio import coroutines

        if coroutines.iscoroutine(callback) or coroutines.iscoroutinefunction(callback):
            raise TypeError("coroutines cannot be used with add_signal_handler()")
        self._check_signal(sig)
        self._check_closed()
        pair = self._open_signal_pair()
        try:
            signal.set_wakeup_fd(pair[1].fileno())
        except (ValueError, OSError) as exc:
            raise RuntimeError(str(exc)) from None
        handle = events.Handle(callback, args, self, None)
        self._signal_handlers[sig] = handle
        try:
            signal.signal(sig, _sighandler_noop)
            signal.siginterrupt(sig, False)
        except OSError as exc:
            del self._signal_handlers[sig]
            if not self._signal_handlers:
                self._release_wakeup_fd()
            if exc.errno == errno.EINVAL:
                raise RuntimeError(f"sig {sig:d} cannot be caught") from None
            raise

    def remove_signal_handler(self, sig: int) -> bool:
        self._check_signal(sig)
        if self._signal_handlers.pop(sig, None) is None:
            return False
        handler: Any = signal.default_int_handler if sig == signal.SIGINT else signal.SIG_DFL
        try:
            signal.signal(sig, handler)
        except OSError as exc:
            if exc.errno == errno.EINVAL:
                raise RuntimeError(f"sig {sig:d} cannot be caught") from None
            raise
        if not self._signal_handlers:
            self._release_wakeup_fd()
        return True

    def _open_signal_pair(self) -> tuple[socket.socket, socket.socket]:
        if self._signal_pair is None:
            rsock, wsock = socket.socketpair()
            rsock.setblocking(False)
            wsock.setblocking(False)
            self._reactor.watch(rsock.fileno(), READ, self._read_signals)
            self._signal_pair = (rsock, wsock)
        return self._signal_pair

    def _release_wakeup_fd(self) -> None:
        try:
            signal.set_wakeup_fd(-1)
        except (ValueError, OSError) as exc:
            logger.info("set_wakeup_fd(-1) failed: %s", exc)

    def _close_signal_pair(self) -> None:
        if self._signal_pair is not None:
            rsock, wsock = self._signal_pair
            self._signal_pair = None
            self._reactor.unwatch(rsock.fileno())
            rsock.close()
            wsock.close()

    def _read_signals(self, events_mask: int) -> None:
        assert self._signal_pair is not None
        rsock = self._signal_pair[0]
        while True:
            try:
                data = rsock.recv(4096)
            except (BlockingIOError, InterruptedError):
                return
            if not data:
                return
            for signum in data:
                handle = self._signal_handlers.get(signum)
                if handle is None:
                    continue
                if handle._cancelled:
                    self.remove_signal_handler(signum)
                else:
                    self._ready.append(handle)
