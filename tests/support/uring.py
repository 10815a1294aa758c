"""Helpers shared by the io_uring tests (``tests/loop/uring``, ``tests/net/uring``): TCP
loopback pairs, a bounded wait for completions and a completion-mode loop (in a thread,
with chosen ring sizes)."""

from __future__ import annotations

import socket
import time

import pytest

from ioreactor.loop.event_loop import EventLoop
from ioreactor.loop.uring.completion import CompletionPoller
from ioreactor.loop.uring.loop import create_loop
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
    """:class:`LoopThread` over a completion-mode loop with these ring sizes (which the
    loop thread closes, as every LoopThread does); skips where io_uring is unavailable."""

    def __init__(self, **options: int) -> None:
        super().__init__(make_loop(**options), name="test-uring")

    @property
    def port(self) -> CompletionPoller:
        """The loop's completion poller (touch it from the loop thread: ``call``)."""
        return port_of(self.loop)
