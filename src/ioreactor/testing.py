"""Helpers for testing code built on ioreactor (public, as trio's testing module is).

:class:`LoopThread` runs an :class:`EventLoop` in a background thread, so a test (or a
user's own protocol test) can drive blocking clients from the main thread while the
server lives on the loop, and still touch loop-owned objects through :meth:`call`.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any, TypeVar

from ioreactor.loop.backends import new_loop
from ioreactor.loop.event_loop import EventLoop
from ioreactor.loop.poller import Poller

T = TypeVar("T")


class LoopThread:
    """An event loop running in a daemon thread; use as a context manager."""

    def __init__(
        self, backend: str | Poller | EventLoop | None = None, *, name: str = "test-loop"
    ) -> None:
        """``backend``: a backend name (see :func:`ioreactor.loop.backends.new_loop`), a
        poller, or a ready loop (not yet running) to adopt."""
        if isinstance(backend, EventLoop):
            self.loop = backend
        elif isinstance(backend, Poller):
            self.loop = EventLoop(backend, name=name)
        else:
            self.loop = new_loop(backend, name=name)
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._error: BaseException | None = None

    def _run(self) -> None:
        try:
            self.loop.run()
        except BaseException as exc:  # surfaced by stop()
            self._error = exc

    def start(self) -> LoopThread:
        """Start the thread and return once it owns the loop (its first iteration ran)."""
        owned = threading.Event()
        self.loop.call_soon(owned.set)
        self._thread.start()
        if not owned.wait(30):
            raise RuntimeError("loop thread did not start")
        return self

    def call(self, fn: Callable[..., T], *args: Any, timeout: float = 30.0) -> T:
        """Run ``fn(*args)`` on the loop thread and return its result (or raise its error)."""
        done = threading.Event()
        box: dict[str, Any] = {}

        def _invoke() -> None:
            try:
                box["result"] = fn(*args)
            except BaseException as exc:
                box["error"] = exc
            finally:
                done.set()

        if not self._thread.is_alive():
            raise RuntimeError("loop thread is not running")
        self.loop.call_soon_threadsafe(_invoke)
        if not done.wait(timeout):
            raise TimeoutError(f"loop did not run {fn!r} within {timeout} s")
        if "error" in box:
            raise box["error"]
        result: T = box["result"]
        return result

    def wait_until(self, predicate: Callable[[], bool], timeout: float = 30.0) -> bool:
        """Poll ``predicate`` on the loop thread until it is true or ``timeout`` passes."""
        deadline = self.loop.time() + timeout
        event = threading.Event()
        while self.loop.time() < deadline:
            if self.call(predicate):
                return True
            event.wait(0.005)
        return False

    def stop(self) -> None:
        if self._thread.is_alive():
            self.loop.stop()
            self._thread.join(30)
        if not self._thread.is_alive():
            self.loop.close()
        if self._error is not None:
            raise self._error

    def __enter__(self) -> LoopThread:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def open_fds() -> int:
    """How many fds this process has open (to check that nothing leaks)."""
    return len(os.listdir("/proc/self/fd"))
