"""Helpers shared by the tests of ``ioreactor.net``: fd counting, driving a loop until a
condition holds, a free loopback port, and the IPv6-loopback skip marker.

Imported as ``from net_support import ...`` (pytest puts this directory on ``sys.path``,
as for ``tests/http/http_support.py``).
"""

from __future__ import annotations

import gc
import socket
import time
from collections.abc import Callable

import pytest

from ioreactor.loop.event_loop import EventLoop
from ioreactor.testing import open_fds

#: Seconds a test waits for something that must happen (generous: the machine is shared).
LIVENESS = 20.0


def fd_count() -> int:
    """Open fds, once sockets dropped by earlier tests have been collected."""
    gc.collect()
    return open_fds()


def run_until(loop: EventLoop, predicate: Callable[[], bool], timeout: float = LIVENESS) -> None:
    """Drive ``loop`` from the test thread until ``predicate()`` holds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        loop.run_once(0.05)


def free_port() -> int:
    """A port with no listener (bound then released; nobody else binds it meanwhile)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _ipv6_loopback() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


HAS_IPV6 = _ipv6_loopback()
needs_ipv6 = pytest.mark.skipif(not HAS_IPV6, reason="this host has no IPv6 loopback (::1)")
