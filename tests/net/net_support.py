"""Helpers shared by the tests of ``ioreactor.net``: fd counting and the IPv6-loopback
skip marker (driving a loop, free ports: :mod:`ioreactor.testing`).

Imported as ``from net_support import ...`` (pytest puts this directory on ``sys.path``,
as for ``tests/http/http_support.py``).
"""

from __future__ import annotations

import gc
import socket

import pytest

from ioreactor.testing import open_fds

#: Seconds a test waits for something that must happen (generous: the machine is shared).
LIVENESS = 20.0


def fd_count() -> int:
    """Open fds, once sockets dropped by earlier tests have been collected."""
    gc.collect()
    return open_fds()


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
