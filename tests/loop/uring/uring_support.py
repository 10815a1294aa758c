"""Helpers shared by the io_uring tests: TCP loopback pairs and a bounded wait."""

from __future__ import annotations

import socket
import time

from ioreactor.loop.uring.ring import Ring

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
