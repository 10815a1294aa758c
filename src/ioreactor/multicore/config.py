"""What a multi-core server is asked to run: one frozen description shared by every process."""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from ioreactor.net.acceptor import BACKLOG
from ioreactor.net.address import Address
from ioreactor.net.proxy_protocol import ProxyTrust
from ioreactor.net.server import BALANCES, SHUTDOWN_TIMEOUT, Balance

if TYPE_CHECKING:
    from ioreactor.loop.event_loop import EventLoop
    from ioreactor.net.server import TcpServer

Dispatch = Literal["reuseport", "fdpass"]
#: How connections reach worker processes: each worker's own SO_REUSEPORT listener
#: (the kernel balances), or a main reactor that accepts and passes fds (SCM_RIGHTS).
DISPATCHES: tuple[Dispatch, ...] = ("reuseport", "fdpass")


def default_dispatch(address: Address | None = None) -> Dispatch:
    """``reuseport`` where the kernel balances SO_REUSEPORT listeners (Linux TCP), else
    ``fdpass`` (other systems, and Unix-domain addresses)."""
    if address is not None and address.is_unix:
        return "fdpass"
    if sys.platform == "linux" and hasattr(socket, "SO_REUSEPORT"):
        return "reuseport"
    return "fdpass"


def default_workers() -> int:
    """One worker process per core this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


@dataclass(frozen=True)
class ServeConfig:
    """Everything a worker needs to build its server, decided before any fork.

    ``workers=0`` serves in the calling process (no supervisor); ``loops`` is the number
    of sub-reactor threads in each serving process; ``balance`` picks a worker (fdpass)
    and a sub-loop; ``server_options`` go to :class:`~ioreactor.net.server.TcpServer`
    (``nodelay``, ``keepalive``, water marks, ``accept_batch``).
    """

    address: Address
    workers: int
    loops: int = 0
    dispatch: Dispatch = "reuseport"
    balance: Balance = "round-robin"
    poller: str | None = None
    backlog: int = BACKLOG
    shutdown_timeout: float = SHUTDOWN_TIMEOUT
    server_options: Mapping[str, Any] = field(default_factory=dict)
    #: Listening sockets inherited (socket activation, ``--fd``, an upgrade) to serve
    #: instead of binding ``address``; several must share one address (a SO_REUSEPORT
    #: group: the workers share them out).
    listeners: tuple[socket.socket, ...] = ()
    #: Peers whose connections start with a PROXY protocol header (None: no header).
    proxy_protocol: ProxyTrust | None = None
    #: Seconds a stopping worker keeps serving (and accepting) after it starts draining
    #: -- /healthz says 503, responses say ``Connection: close`` -- so that a balancer
    #: stops sending before the listener closes.
    drain_delay: float = 0.0
    #: Recycle a worker after about this many requests (0: never), plus a random
    #: 0..max_requests_jitter so the workers do not all restart at once.
    max_requests: int = 0
    max_requests_jitter: int = 0
    #: Recycle a worker whose resident memory passes this many MiB (0: never).
    max_rss: int = 0
    #: Where Prometheus scrapes ``/metrics`` (None: no metrics are kept).
    metrics_listen: Address | None = None

    def __post_init__(self) -> None:
        if self.workers < 0:
            raise ValueError(f"workers must be >= 0, got {self.workers}")
        if self.loops < 0:
            raise ValueError(f"loops must be >= 0, got {self.loops}")
        if self.dispatch not in DISPATCHES:
            raise ValueError(f"dispatch must be one of {', '.join(DISPATCHES)}")
        if self.balance not in BALANCES:
            raise ValueError(f"balance must be one of {', '.join(BALANCES)}")
        if self.shutdown_timeout < 0:
            raise ValueError("shutdown_timeout must be >= 0")
        for name in ("drain_delay", "max_requests", "max_requests_jitter", "max_rss"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.listeners:
            names = {_sockname(sock) for sock in self.listeners}
            if len(names) > 1:
                raise ValueError(
                    "inherited listeners on several addresses "
                    f"({', '.join(sorted(map(str, names)))}): a server serves one address"
                )
        if self.workers and self.dispatch == "reuseport":
            if not hasattr(socket, "SO_REUSEPORT"):
                raise ValueError("dispatch 'reuseport' needs SO_REUSEPORT; use 'fdpass'")
            if self.address.is_unix:
                raise ValueError("dispatch 'reuseport' is for TCP; a Unix socket needs 'fdpass'")

    @property
    def inherited(self) -> bool:
        return bool(self.listeners)

    def describe(self) -> str:
        if not self.workers:
            return f"1 process, {self.loops} sub-loop thread(s)"
        return (
            f"{self.workers} worker(s), dispatch {self.dispatch}, "
            f"{self.loops} sub-loop thread(s) each, balance {self.balance}"
        )


@dataclass(frozen=True)
class WorkerContext:
    """Given to ``on_worker_start`` in each serving process, after its server started."""

    index: int
    pid: int
    loop: EventLoop
    server: TcpServer


def _sockname(sock: socket.socket) -> Any:
    try:
        return sock.getsockname()
    except OSError as exc:
        return f"(fd {sock.fileno()}: {exc.strerror})"
