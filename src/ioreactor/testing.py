"""Helpers for testing code built on ioreactor (public, as trio's testing module is).

Two ways to run a loop in a test, and the small tools both need::

    the test drives the loop             the loop runs in a thread
    ------------------------             -------------------------
    conn, peer = connection_pair(        with LoopThread("epoll") as lt:
        loop, MyHandler())                   server = lt.call(TcpServer(...).start)
    peer.sendall(b"ping\\n")                 sock = socket.create_connection(...)
    run_until(loop, lambda: ...)             sock.sendall(b"ping\\n")
    recv_exactly(peer, 5)                    recv_exactly(sock, 5)
                                             lt.wait_until(lambda: ...)

* :class:`LoopThread`: an :class:`EventLoop` in a daemon thread; :meth:`LoopThread.call`
  runs a function on it (touch loop-owned objects only there) and returns its result.
* :func:`run_until`: run iterations of a loop the test owns until a condition holds.
* :func:`connection_pair`: a connection with your handler on one end of a socketpair,
  a plain socket (the test plays the peer) on the other.
* :func:`recv_exactly`, :func:`read_until_closed`: the peer's side of an exchange.
* :func:`wait_until`: poll a condition from the test's thread (a log line, a process).
* :class:`MockClock`: a clock the test moves by hand, for anything that takes a clock
  (a :class:`~ioreactor.loop.timing_wheel.TimingWheel`, a WebSocket session).
* :func:`free_port`, :func:`open_fds`: a port for a program the test starts; an fd count
  to check that nothing leaks.

Every wait is bounded (:data:`LIVENESS` unless told) and fails loudly when it runs out.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, TypeVar

from ioreactor.loop.backends import new_loop
from ioreactor.loop.event_loop import EventLoop
from ioreactor.loop.poller import Poller
from ioreactor.net.channels import connection_class
from ioreactor.net.connection import TcpConnection
from ioreactor.net.handlers import Handler

T = TypeVar("T")

#: Seconds a helper waits for something that must happen "soon" before it gives up
#: (generous: a test machine may be shared).
LIVENESS = 30.0


class LoopThread:
    """An event loop running in a daemon thread; use as a context manager.

    The loop is closed by its own thread once it stops (a completion-mode loop can
    cancel its in-flight operations only there).
    """

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
            self.loop.close()
        except BaseException as exc:  # surfaced by stop()
            self._error = exc

    def start(self) -> LoopThread:
        """Start the thread and return once it owns the loop (its first iteration ran)."""
        owned = threading.Event()
        self.loop.call_soon(owned.set)
        self._thread.start()
        if not owned.wait(LIVENESS):
            raise RuntimeError("loop thread did not start")
        return self

    def call(self, fn: Callable[..., T], *args: Any, timeout: float = LIVENESS) -> T:
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

    def wait_until(self, predicate: Callable[[], bool], timeout: float = LIVENESS) -> bool:
        """Poll ``predicate`` on the loop thread until it is true or ``timeout`` passes."""
        return wait_until(lambda: self.call(predicate), timeout, interval=0.005)

    def stop(self) -> None:
        """Stop the loop and join the thread (idempotent); raise what killed the loop."""
        if self._thread.is_alive():
            self.loop.stop()
            self._thread.join(LIVENESS)
        if not self._thread.is_alive():
            self.loop.close()  # a no-op unless run() ended with an error
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


def run_until(loop: EventLoop, predicate: Callable[[], bool], timeout: float = LIVENESS) -> None:
    """Run iterations of ``loop`` (not running elsewhere) until ``predicate()`` holds;
    AssertionError if it does not within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"condition not reached within {timeout} s"
        loop.run_once(0.05)


def wait_until(
    predicate: Callable[[], bool], timeout: float = LIVENESS, *, interval: float = 0.02
) -> bool:
    """Poll ``predicate`` every ``interval`` seconds until it is true (True) or
    ``timeout`` passes (its last answer)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def connection_pair(
    loop: EventLoop, handler: Handler, **options: Any
) -> tuple[TcpConnection, socket.socket]:
    """A started connection of ``loop``'s kind with ``handler`` on one end of a
    socketpair, and the other end as a blocking socket (timeout :data:`LIVENESS`) for
    the test to play the peer. ``options`` go to the connection (water marks). Call it
    where the loop's objects may be touched: its own thread, or the test's while the
    test drives the loop."""
    ours, peer = socket.socketpair()
    ours.setblocking(False)
    peer.settimeout(LIVENESS)
    try:
        conn = connection_class(loop)(loop, ours, "socketpair", handler, **options)
    except BaseException:
        ours.close()
        peer.close()
        raise
    conn.start()
    return conn, peer


def recv_exactly(sock: socket.socket, n: int) -> bytes:
    """Exactly ``n`` bytes from ``sock``; ConnectionError if the peer closes first."""
    data = bytearray()
    while len(data) < n:
        chunk = sock.recv(min(n - len(data), 1 << 20))
        if not chunk:
            raise ConnectionError(f"EOF after {len(data)} of {n} bytes")
        data += chunk
    return bytes(data)


def read_until_closed(sock: socket.socket, timeout: float = LIVENESS) -> tuple[bytes, bool]:
    """Everything the peer sends until it closes (EOF or reset), and whether it closed
    within ``timeout`` seconds."""
    received = bytearray()
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return bytes(received), False
        sock.settimeout(left)
        try:
            chunk = sock.recv(1 << 16)
        except TimeoutError:
            return bytes(received), False
        except ConnectionResetError:
            return bytes(received), True
        if not chunk:
            return bytes(received), True
        received += chunk


class MockClock:
    """A clock that moves only when told: ``clock()``, ``clock.time()`` and ``clock.now``
    are the same reading. Pass ``clock`` (or ``clock.time``) where a clock is taken."""

    __slots__ = ("now",)

    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def time(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        """Move the clock forward; the new reading."""
        if seconds < 0:
            raise ValueError(f"a clock does not go back ({seconds} s)")
        self.now += seconds
        return self.now


def free_port(host: str = "127.0.0.1", kind: socket.SocketKind = socket.SOCK_STREAM) -> int:
    """A port with nothing bound to it now, for a program that must be told its port
    (bound and released: another binder could take it meanwhile, so prefer port 0)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, kind) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def open_fds() -> int:
    """How many fds this process has open (to check that nothing leaks)."""
    return len(os.listdir("/proc/self/fd"))
