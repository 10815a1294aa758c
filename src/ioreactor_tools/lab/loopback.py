"""Loopback building blocks the experiments share: a connected TCP pair, waiting.

Everything runs on 127.0.0.1 with kernel-chosen ports, so labs run side by side (and
beside the test suite) without clashing.
"""

from __future__ import annotations

import select
import socket
import time
from collections.abc import Callable

LOOPBACK = "127.0.0.1"


def tcp_pair(rcvbuf: int | None = None) -> tuple[socket.socket, socket.socket]:
    """A connected (client, server) pair; ``rcvbuf`` sets the client's SO_RCVBUF first."""
    with socket.socket() as listener:
        listener.bind((LOOPBACK, 0))
        listener.listen(1)
        client = socket.socket()
        if rcvbuf is not None:
            client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        client.connect(listener.getsockname())
        server, _ = listener.accept()
    return client, server


def ports(sock: socket.socket) -> tuple[int, int]:
    """(local port, remote port) of a connected socket."""
    return sock.getsockname()[1], sock.getpeername()[1]


def wait_for(predicate: Callable[[], bool], timeout: float, step: float = 0.005) -> bool:
    """Poll ``predicate`` until true or ``timeout`` seconds pass; the kernel's loopback
    work (FIN, ACK, RST) is asynchronous to the system call that caused it."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            return False
        time.sleep(step)
    return True


def wait_for_error(sock: socket.socket, timeout: float) -> bool:
    """Wait until the kernel flags an error (an RST arrived) on ``sock``, without
    consuming it as ``getsockopt(SO_ERROR)`` would; True if one came in time."""
    poller = select.poll()
    poller.register(sock, 0)  # POLLERR and POLLHUP are always reported
    return any(ev & (select.POLLERR | select.POLLHUP) for _, ev in poller.poll(timeout * 1000))
