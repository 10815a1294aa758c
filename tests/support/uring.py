"""Helpers shared by the io_uring tests (``tests/loop/uring``, ``tests/net/uring``): TCP
loopback pairs, a bounded wait for completions, a completion-mode loop in a thread, a
non-blocking echo checker, and the fixtures that put a directory's tests on that loop."""

from __future__ import annotations

import selectors
import socket
import threading
import time
from collections.abc import Iterator, Sequence

import pytest

from ioreactor.loop.event_loop import EventLoop
from ioreactor.loop.uring.completion import CompletionPoller
from ioreactor.loop.uring.loop import LOOP_NAME, create_loop
from ioreactor.loop.uring.ring import Ring, UringUnavailable
from ioreactor.testing import LoopThread

Cqe = tuple[int, int, int]


def tcp_pair() -> tuple[socket.socket, socket.socket]:
    """A connected TCP loopback pair (client, server side), both blocking."""
    with socket.create_server(("127.0.0.1", 0)) as lst:
        cli = socket.create_connection(lst.getsockname())
        srv, _ = lst.accept()
    return cli, srv


def wait_for(ring: Ring, count: int, timeout: float = 2.0) -> list[Cqe]:
    """Submit, then collect completions until ``count`` arrived; fail after ``timeout``."""
    out: list[Cqe] = []
    deadline = time.monotonic() + timeout
    while len(out) < count:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"only {len(out)} of {count} completions: {out}")
        ring.submit_and_wait(min(left, 0.2))
        ring.reap(out)
    return out


def make_loop(**options: int) -> EventLoop:
    """A completion-mode loop, or skip the test where io_uring is unavailable."""
    try:
        return create_loop(name="test-uring", **options)
    except UringUnavailable as exc:
        pytest.skip(f"io_uring unavailable here: {exc.strerror}")


def port_of(loop: EventLoop) -> CompletionPoller:
    """The completion poller of a completion-mode loop (its ring, ops and buffers)."""
    assert isinstance(loop.poller, CompletionPoller)
    return loop.poller


class UringLoopThread(LoopThread):
    """:class:`LoopThread` over a completion-mode loop, closed by its own thread.

    The ring binds to the thread that runs it; only that thread can cancel the in-flight
    receives before their buffers are unmapped, so the loop is closed there (as
    ``EventLoopThread`` does), after ``run()`` returns.
    """

    def __init__(self, **options: int) -> None:
        self.loop = make_loop(**options)
        self._thread = threading.Thread(target=self._run, name="test-uring", daemon=True)
        self._error: BaseException | None = None

    def _run(self) -> None:
        try:
            self.loop.run()
            self.loop.close()
        except BaseException as exc:  # surfaced by stop()
            self._error = exc

    @property
    def port(self) -> CompletionPoller:
        """The loop's completion poller (touch it from the loop thread: ``call``)."""
        return port_of(self.loop)


def echo_check(
    address: tuple[str, int], payloads: Sequence[Sequence[bytes]], timeout: float = 30.0
) -> list[bytes]:
    """Open one connection per entry of ``payloads``, send its messages back to back while
    reading, and return what each connection got back once it has as many bytes as it
    sent (the caller compares). One thread, non-blocking sockets: never deadlocks on a
    server that pauses reading."""
    sel = selectors.DefaultSelector()
    want: list[int] = []
    got: list[bytearray] = []
    pending: list[memoryview] = []
    socks: list[socket.socket] = []
    for i, messages in enumerate(payloads):
        sock = socket.create_connection(address, timeout=timeout)
        sock.setblocking(False)
        socks.append(sock)
        data = b"".join(messages)
        want.append(len(data))
        got.append(bytearray())
        pending.append(memoryview(data))
        sel.register(sock, selectors.EVENT_READ | selectors.EVENT_WRITE, i)
    deadline = time.monotonic() + timeout
    try:
        remaining = sum(1 for n in want if n)
        while remaining:
            if time.monotonic() > deadline:
                short = {i: (len(got[i]), w) for i, w in enumerate(want) if len(got[i]) < w}
                raise AssertionError(f"echo incomplete (got, want) per connection: {short}")
            for key, events in sel.select(0.5):
                i = key.data
                sock = socks[i]
                if events & selectors.EVENT_WRITE and pending[i]:
                    try:
                        n = sock.send(pending[i][: 256 * 1024])
                    except BlockingIOError:
                        n = 0
                    pending[i] = pending[i][n:]
                    if not pending[i]:
                        sel.modify(sock, selectors.EVENT_READ, i)
                if events & selectors.EVENT_READ:
                    try:
                        chunk = sock.recv(1 << 20)
                    except BlockingIOError:
                        continue
                    if not chunk:
                        raise AssertionError(f"connection {i} closed by the server early")
                    got[i] += chunk
                    if len(got[i]) >= want[i]:
                        sel.unregister(sock)
                        remaining -= 1
    finally:
        sel.close()
        for sock in socks:
            sock.close()
    return [bytes(g) for g in got]


# -- fixtures: a directory's conftest imports these to run its tests on the completion loop


@pytest.fixture
def poller_name() -> str:
    return LOOP_NAME


@pytest.fixture
def loop() -> Iterator[EventLoop]:
    """A completion-mode loop driven (and closed) by the test thread."""
    ev = make_loop()
    yield ev
    ev.close()


@pytest.fixture
def loop_thread() -> Iterator[UringLoopThread]:
    """A completion-mode loop running in a background thread."""
    with UringLoopThread() as lt:
        yield lt
