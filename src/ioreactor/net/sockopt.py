"""Socket options the course discusses, named and validated, and the fd limit."""

from __future__ import annotations

import resource
import socket
from dataclasses import dataclass


@dataclass(frozen=True)
class KeepAlive:
    """Kernel TCP keepalive timers (Linux defaults: 7200 s idle, 75 s interval, 9 probes).

    With the defaults a dead peer is noticed after 2 h + 9 x 75 s, which is why
    applications add their own heartbeat (see :mod:`ioreactor.heartbeat`).
    """

    idle: int = 7200
    interval: int = 75
    count: int = 9

    def __post_init__(self) -> None:
        for name in ("idle", "interval", "count"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"keepalive {name} must be a positive integer, got {value!r}")


def set_keepalive(sock: socket.socket, keepalive: KeepAlive | None) -> None:
    """Enable SO_KEEPALIVE with the given timers, or disable it for None."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1 if keepalive else 0)
    if keepalive is None:
        return
    if hasattr(socket, "TCP_KEEPIDLE"):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, keepalive.idle)
    if hasattr(socket, "TCP_KEEPINTVL"):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, keepalive.interval)
    if hasattr(socket, "TCP_KEEPCNT"):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, keepalive.count)


def is_tcp(sock: socket.socket) -> bool:
    return sock.family in (socket.AF_INET, socket.AF_INET6)


def raise_nofile_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit; returns the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return soft
