"""C100K: 100,000 concurrent keep-alive connections to ``ioreactor serve``, idle then active.

``ioreactor bench c100k [--conns 100000] [--workers W] [--load-procs P] [--idle 5]``

Data flow::

    limits (/proc/sys, RLIMIT_NOFILE) -> Plan: W server workers and P load processes, each
        under the per-process fd limit; S source addresses 127.0.0.2.. (each gives the
        ephemeral port range once more: no port exhaustion, no slow port search)
    ioreactor serve --workers W (SO_REUSEPORT; every worker listening before the load)
    P load processes (each its share, its sources; bind(source) then connect):
        connect + GET /  (a window of connects and first answers in flight)  -> "held"
    the parent samples the server (RSS, fds) and the kernel's socket objects, then
        waits --idle seconds
        -> "go": every connection sends GET / again at once -> "done"
    report: connected, served twice, errors by kind, RSS per connection; and, when it
        falls short, which limit the errors point to

Every connection must be answered twice (200, the whole body) with zero errors: a
connection the server closed while idle, a connect that failed or timed out, a wrong
answer, each is an error named by its kind. The server's keep-alive and header timeouts
are raised above the run's length (a connection opened first waits for the last one).
"""

from __future__ import annotations

import argparse
import errno
import math
import os
import resource
import socket
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httptools

from ioreactor.cli.arguments import one_of, positive_count, seconds, seconds_or_zero
from ioreactor.loop.event_loop import EventLoop
from ioreactor.loop.poller import WRITE, available_pollers
from ioreactor.net.connection import TcpConnection
from ioreactor.net.handlers import Handler
from ioreactor.net.sockopt import raise_nofile_limit
from ioreactor.testing import free_port
from ioreactor_tools.bench.latency import LatencyHistogram
from ioreactor_tools.bench.pinning import ServerProcess
from ioreactor_tools.bench.procstat import TreeSample
from ioreactor_tools.bench.tcp_load import errno_kind, split_conns
from ioreactor_tools.children import receive

if TYPE_CHECKING:
    import multiprocessing.connection

    from ioreactor.loop.timers import TimerHandle
    from ioreactor.net.buffer import Buffer

#: The target: concurrent connections, and seconds they stay idle between the two GETs.
CONNS = 100_000
IDLE = 5.0
#: fds a process keeps for itself besides its connections (listeners, pipes, epoll...).
FD_RESERVE = 100
#: A worker's share of reuseport's hash spread may exceed the mean by this factor.
SPREAD_HEADROOM = 1.15
#: A source address is given at most this share of the ephemeral port range: connect()
#: picks ports of one parity first (bind() gets the other half), and once that half is
#: full each connect scans it all (measured here: 18,000 connections per source connect
#: at 1,700/s, 6,000 per source at 7,400/s).
PORT_SHARE = 0.4
#: The server's address; the sources are 127.0.0.2, 127.0.0.3, ... (all of 127.0.0.0/8
#: is loopback on Linux).
SERVER_HOST = "127.0.0.1"
FIRST_SOURCE = 2
#: Connects plus first answers in flight per load process (the listen backlog holds them).
WINDOW = 256
BACKLOG = 4096
#: Seconds a connect, and each round of GETs, may take; a load process's whole run.
CONNECT_TIMEOUT = 30.0
ROUND_TIMEOUT = 120.0
PROCESS_TIMEOUT = 600.0
#: Seconds for every worker to listen.
READY_TIMEOUT = 30.0
#: Linux's IP_BIND_ADDRESS_NO_PORT (Python 3.12 names it): bind() takes the address
#: only; the port is picked at connect() time, unique per 4-tuple rather than per address.
IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)
#: The slab caches every TCP socket takes objects from: the socket, its inode, its file,
#: its epoll registration.
SOCKET_SLABS = ("TCP", "sock_inode_cache", "filp", "eventpoll_epi")
REQUEST = b"GET / HTTP/1.1\r\nHost: c100k\r\n\r\n"
EXPECTED_BODY = b"Hello, World!"

#: What each error kind says about the limit that stopped the run.
LIMIT_HINTS = {
    "connect:EADDRNOTAVAIL": "source ports exhausted (more --sources, or a wider "
    "net.ipv4.ip_local_port_range), or a source address that is not this machine's",
    "connect:EMFILE": "a load process hit RLIMIT_NOFILE: more --load-procs",
    "connect:ENFILE": "the system file table is full: fs.file-max",
    "connect:ETIMEDOUT": "SYNs dropped: listen backlog full (net.core.somaxconn, "
    "net.ipv4.tcp_max_syn_backlog) or the server too slow to accept",
    "connect:ECONNREFUSED": "no listener, or its queue overflowed (net.core.somaxconn)",
    "connect:ENOBUFS": "kernel memory for sockets (net.ipv4.tcp_mem)",
    "connect:ENOMEM": "kernel memory for sockets (net.ipv4.tcp_mem)",
    "closed:eof": "the server closed connections: a worker out of fds (more --workers; "
    "the server logs EMFILE) or a timeout shorter than the run",
    "closed:ECONNRESET": "the server reset connections: a worker died or shed them",
    "unanswered": "requests not answered in time: the server is overloaded",
}


# -- limits and the plan --------------------------------------------------------------------


@dataclass(frozen=True)
class KernelLimits:
    """What this machine allows (read from /proc and getrlimit)."""

    nofile: int  # RLIMIT_NOFILE hard limit: fds per process
    file_max: int  # fs.file-max: fds in the whole system
    nr_open: int  # fs.nr_open: the most RLIMIT_NOFILE may be raised to
    somaxconn: int  # net.core.somaxconn: listen backlog cap
    syn_backlog: int  # net.ipv4.tcp_max_syn_backlog
    port_range: tuple[int, int]  # net.ipv4.ip_local_port_range
    conntrack_max: int | None  # net.netfilter.nf_conntrack_max, when conntrack is loaded
    mem_available: int  # bytes (MemAvailable)

    @property
    def ports_per_source(self) -> int:
        low, high = self.port_range
        return high - low + 1

    @classmethod
    def read(cls) -> KernelLimits:
        low, high = (int(v) for v in _sysctl("net/ipv4/ip_local_port_range").split())
        conntrack = _sysctl_if_present("net/netfilter/nf_conntrack_max")
        return cls(
            nofile=resource.getrlimit(resource.RLIMIT_NOFILE)[1],
            file_max=int(_sysctl("fs/file-max")),
            nr_open=int(_sysctl("fs/nr_open")),
            somaxconn=int(_sysctl("net/core/somaxconn")),
            syn_backlog=int(_sysctl("net/ipv4/tcp_max_syn_backlog")),
            port_range=(low, high),
            conntrack_max=int(conntrack) if conntrack is not None else None,
            mem_available=_meminfo("MemAvailable"),
        )

    def rows(self) -> list[tuple[str, str]]:
        low, high = self.port_range
        conntrack = "not loaded" if self.conntrack_max is None else f"{self.conntrack_max:,}"
        return [
            ("RLIMIT_NOFILE (hard, per process)", f"{self.nofile:,}"),
            ("fs.file-max", f"{self.file_max:,}"),
            ("fs.nr_open", f"{self.nr_open:,}"),
            ("net.core.somaxconn", f"{self.somaxconn:,}"),
            ("net.ipv4.tcp_max_syn_backlog", f"{self.syn_backlog:,}"),
            ("net.ipv4.ip_local_port_range", f"{low} {high} ({self.ports_per_source:,} ports)"),
            ("net.netfilter.nf_conntrack_max", conntrack),
            ("MemAvailable", f"{self.mem_available / 2**30:.1f} GiB"),
        ]


@dataclass(frozen=True)
class Plan:
    """How the connections are spread: server workers, load processes, source addresses."""

    conns: int
    workers: int
    load_procs: int
    sources: tuple[str, ...]
    backlog: int

    def per_worker(self) -> int:
        """Connections the busiest worker may get (reuseport's spread is a hash)."""
        return math.ceil(self.conns / self.workers * SPREAD_HEADROOM)

    def per_load_process(self) -> int:
        return math.ceil(self.conns / self.load_procs)

    def problems(self, limits: KernelLimits) -> list[str]:
        """What in ``limits`` stops this plan from holding every connection."""
        found = []
        usable = limits.nofile - FD_RESERVE
        if self.per_worker() > usable:
            found.append(
                f"a worker may get {self.per_worker():,} connections, over its fd limit "
                f"({limits.nofile:,}): use more --workers"
            )
        if self.per_load_process() > usable:
            found.append(
                f"a load process holds {self.per_load_process():,} connections, over its fd "
                f"limit ({limits.nofile:,}): use more --load-procs"
            )
        if 2 * self.conns + 10 * FD_RESERVE > limits.file_max:
            found.append(f"fs.file-max {limits.file_max:,} < {2 * self.conns:,} (both ends)")
        per_source = math.ceil(self.conns / len(self.sources))
        if per_source > limits.ports_per_source:
            found.append(
                f"{per_source:,} connections per source address > {limits.ports_per_source:,} "
                "ephemeral ports: use more --sources or widen net.ipv4.ip_local_port_range"
            )
        if limits.conntrack_max is not None and limits.conntrack_max < self.conns:
            found.append(
                f"net.netfilter.nf_conntrack_max {limits.conntrack_max:,} < {self.conns:,}"
            )
        if self.backlog > limits.somaxconn:
            found.append(
                f"listen backlog {self.backlog:,} is capped by net.core.somaxconn "
                f"{limits.somaxconn:,} (connects may queue longer)"
            )
        return found


def make_plan(
    conns: int,
    limits: KernelLimits,
    *,
    workers: int | None = None,
    load_procs: int | None = None,
    sources: int | None = None,
    backlog: int = BACKLOG,
) -> Plan:
    """The fewest processes and sources that hold ``conns`` within ``limits``, unless given."""
    usable = max(1, limits.nofile - FD_RESERVE)
    if workers is None:
        workers = max(1, math.ceil(conns * SPREAD_HEADROOM / usable))
    if load_procs is None:
        load_procs = max(1, math.ceil(conns / usable))
    if sources is None:
        per_source = max(1, int(limits.ports_per_source * PORT_SHARE))
        sources = max(load_procs, math.ceil(conns / per_source))  # 9 for 100,000 here
    if min(workers, load_procs, sources) < 1 or load_procs > conns:
        raise ValueError("workers, load processes and sources must be >= 1 (procs <= conns)")
    if FIRST_SOURCE + sources > 255:
        raise ValueError(f"at most {255 - FIRST_SOURCE} source addresses (127.0.0.x)")
    addresses = tuple(f"127.0.0.{FIRST_SOURCE + i}" for i in range(sources))
    return Plan(conns, workers, load_procs, addresses, backlog)


def _sysctl(name: str) -> str:
    return Path("/proc/sys", name).read_text().strip()


def _sysctl_if_present(name: str) -> str | None:
    """A sysctl of a module that may not be loaded (nf_conntrack)."""
    try:
        return _sysctl(name)
    except FileNotFoundError:
        return None


def _meminfo(key: str) -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    return 0


def kernel_socket_memory() -> int | None:
    """Bytes of the kernel's per-socket objects (/proc/slabinfo: the caches in
    :data:`SOCKET_SLABS`, active objects x size); None where slabinfo is not readable.
    Idle sockets hold no buffer memory; these objects are what each one costs."""
    try:
        lines = Path("/proc/slabinfo").read_text().splitlines()
    except OSError:
        return None
    total = 0
    for line in lines:
        fields = line.split()
        if fields and fields[0] in SOCKET_SLABS:
            total += int(fields[1]) * int(fields[3])  # active_objs x objsize
    return total


# -- one load process -----------------------------------------------------------------------


@dataclass(frozen=True)
class Share:
    """One load process's part: its connections and its source addresses."""

    host: str
    port: int
    conns: int
    sources: tuple[str, ...]
    window: int = WINDOW
    connect_timeout: float = CONNECT_TIMEOUT
    round_timeout: float = ROUND_TIMEOUT


@dataclass
class ShareResult:
    """What one load process (or, merged, all of them) saw."""

    conns: int
    connected: int = 0
    served_first: int = 0
    served_again: int = 0
    connect_seconds: float = 0.0
    again_seconds: float = 0.0
    errors: dict[str, int] = field(default_factory=dict)
    by_source: dict[str, int] = field(default_factory=dict)
    latency: LatencyHistogram = field(default_factory=LatencyHistogram)

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    @classmethod
    def merge(cls, parts: Sequence[ShareResult]) -> ShareResult:
        """Processes ran side by side: counts add, the rounds last as long as the longest."""
        errors: Counter[str] = Counter()
        sources: Counter[str] = Counter()
        for part in parts:
            errors.update(part.errors)
            sources.update(part.by_source)
        return cls(
            conns=sum(p.conns for p in parts),
            connected=sum(p.connected for p in parts),
            served_first=sum(p.served_first for p in parts),
            served_again=sum(p.served_again for p in parts),
            connect_seconds=max(p.connect_seconds for p in parts),
            again_seconds=max(p.again_seconds for p in parts),
            errors=dict(sorted(errors.items())),
            by_source=dict(sorted(sources.items())),
            latency=LatencyHistogram.merged(p.latency for p in parts),
        )


class _Exchange:
    """A connection's request in flight: its parser and when it was sent."""

    __slots__ = ("body", "conn", "load", "parser", "sent_ns")

    def __init__(self, load: C100kLoad, conn: TcpConnection) -> None:
        self.load = load
        self.conn = conn
        self.parser = httptools.HttpResponseParser(self)
        self.body = b""
        self.sent_ns = time.perf_counter_ns()

    def on_body(self, body: bytes) -> None:
        self.body += body

    def on_message_complete(self) -> None:
        self.load.answered(self)


class C100kLoad(Handler):
    """One load process: connect its share from its sources, a GET on each, hold them;
    on :meth:`request_all`, a GET on each again."""

    def __init__(self, share: Share) -> None:
        self.share = share
        self.loop = EventLoop(name="c100k-load", slow_iteration=math.inf)
        self.address = (share.host, share.port)
        self.result = ShareResult(conns=share.conns)
        self.errors: Counter[str] = Counter()
        self.by_source: Counter[str] = Counter()
        self.live: set[TcpConnection] = set()
        self.started = 0
        self.pending = 0  # connects and first answers in flight
        self.outstanding = 0  # requests of the current round in flight
        self.round = 1
        self.expired = False  # a round outlived its timeout: start nothing more
        self.closing = False
        self._connects: dict[int, tuple[socket.socket, TimerHandle]] = {}

    # -- round 1: connect, GET, hold ----------------------------------------------------

    def connect_all(self) -> None:
        start = time.monotonic()
        self._fill_window()
        self._run_round()
        self.result.connect_seconds = time.monotonic() - start

    def _fill_window(self) -> None:
        share = self.share
        while self.pending < share.window and self.started < share.conns and not self.expired:
            source = share.sources[self.started % len(share.sources)]
            self.started += 1
            failure = self._connect(source)
            if failure is None:
                self.pending += 1
            else:  # counted here, not through _connect_failed: no recursion per failure
                self.errors[errno_kind("connect", failure)] += 1
        if self.pending == 0 and (self.started >= share.conns or self.expired):
            self.loop.stop()

    def _connect(self, source: str) -> OSError | None:
        """Start a non-blocking connect from ``source``; the error if it failed at once."""
        try:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        except OSError as exc:
            return exc
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.bind((source, 0))
            err = sock.connect_ex(self.address)
        except OSError as exc:
            sock.close()
            return exc
        if err not in (0, errno.EINPROGRESS):
            sock.close()
            return OSError(err, os.strerror(err))
        fd = sock.fileno()
        timer = self.loop.call_later(self.share.connect_timeout, self._connect_expired, fd)
        self._connects[fd] = (sock, timer)
        self.loop.watch(fd, WRITE, lambda events: self._connected(fd))
        return None

    def _connected(self, fd: int) -> None:
        sock, timer = self._connects.pop(fd)
        timer.cancel()
        self.loop.unwatch(fd)
        err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            sock.close()
            self._connect_failed(OSError(err, os.strerror(err)))
            return
        self.by_source[sock.getsockname()[0]] += 1  # the address the kernel really used
        TcpConnection(self.loop, sock, self.address, self).start()

    def _connect_expired(self, fd: int) -> None:
        sock, _ = self._connects.pop(fd)
        self.loop.unwatch(fd)
        sock.close()
        self._connect_failed(OSError(errno.ETIMEDOUT, "connect timed out"))

    def _connect_failed(self, exc: OSError) -> None:
        self.errors[errno_kind("connect", exc)] += 1
        self.pending -= 1
        self._fill_window()

    def on_connection(self, conn: TcpConnection) -> None:
        self.live.add(conn)
        self.result.connected += 1
        self._send(conn)

    def _send(self, conn: TcpConnection) -> None:
        conn.context = _Exchange(self, conn)
        self.outstanding += 1
        conn.send(REQUEST)

    # -- round 2: a GET on every connection --------------------------------------------

    def request_all(self) -> None:
        start = time.monotonic()
        self.round = 2
        for conn in list(self.live):
            self._send(conn)
        self._run_round()
        self.result.again_seconds = time.monotonic() - start

    def _run_round(self) -> None:
        if self.pending == 0 and self.outstanding == 0 and self.started >= self.share.conns:
            return
        timer = self.loop.call_later(self.share.round_timeout, self._round_expired)
        self.loop.run()
        timer.cancel()

    def _round_expired(self) -> None:
        self.expired = True
        self.errors["unanswered"] += self.outstanding + len(self._connects)
        for conn in list(self.live):
            if conn.context is not None:  # its answer never came: out of step
                self._lose(conn)
                conn.force_close()
        self.loop.stop()

    # -- answers and losses -------------------------------------------------------------

    def on_message(self, conn: TcpConnection, buffer: Buffer) -> None:
        exchange: _Exchange | None = conn.context
        if exchange is None:  # bytes nobody asked for
            self._fail(conn, "unrequested")
            buffer.retrieve_all()
            return
        try:
            with buffer.peek() as data:
                exchange.parser.feed_data(data)
        except httptools.HttpParserError:
            self._fail(conn, "parse")
        buffer.retrieve_all()

    def answered(self, exchange: _Exchange) -> None:
        """A whole response: 200, the body, keep-alive, or the connection fails."""
        conn = exchange.conn
        status = exchange.parser.get_status_code()
        if status != 200:
            self._fail(conn, f"status:{status}")
        elif exchange.body != EXPECTED_BODY:
            self._fail(conn, "body")
        elif not exchange.parser.should_keep_alive():
            self._fail(conn, "not-kept-alive")  # the server would close it: not held
        else:
            if self.round == 1:
                self.result.served_first += 1
            else:
                self.result.served_again += 1
                self.result.latency.record(time.perf_counter_ns() - exchange.sent_ns)
            conn.context = None
            self._settle()

    def _fail(self, conn: TcpConnection, kind: str) -> None:
        self.errors[kind] += 1
        self._lose(conn)
        conn.force_close()

    def _lose(self, conn: TcpConnection) -> None:
        """Take ``conn`` out of the load; its request in flight, if any, is lost."""
        if conn not in self.live:
            return
        self.live.discard(conn)
        if conn.context is not None:
            conn.context = None
            self._settle()

    def _settle(self) -> None:
        """A request of this round ended (answered or lost)."""
        self.outstanding -= 1
        if self.round == 1:
            self.pending -= 1
            self._fill_window()
        elif self.outstanding == 0:
            self.loop.stop()

    def on_close(self, conn: TcpConnection) -> None:
        if self.closing or conn not in self.live:
            return
        self.errors[errno_kind("closed", conn.error)] += 1
        self._lose(conn)

    def close_all(self) -> None:
        self.closing = True
        for sock, timer in self._connects.values():
            timer.cancel()
            self.loop.unwatch(sock.fileno())
            sock.close()
        self._connects.clear()
        for conn in list(self.live):
            conn.force_close()
        self.loop.close()

    def finish(self) -> ShareResult:
        self.result.errors = dict(self.errors)
        self.result.by_source = dict(self.by_source)
        return self.result


def _load_main(share: Share, pipe: multiprocessing.connection.Connection) -> None:
    """A load process: round 1, "held", wait for "go", round 2, "done", wait for "close"."""
    raise_nofile_limit()
    load = C100kLoad(share)
    try:
        load.connect_all()
        pipe.send(("held", load.result.connected))
        if pipe.recv() == "go":
            load.request_all()
            pipe.send(("done", load.finish()))
            pipe.recv()  # "close": the parent has sampled what it wanted
    except BaseException as exc:
        pipe.send(("failed", repr(exc)))
        raise
    finally:
        load.close_all()


# -- the run --------------------------------------------------------------------------------


@dataclass
class C100kReport:
    """One run: the plan, what the load saw, and the server before and with the load."""

    plan: Plan
    command: list[str]
    load: ShareResult
    idle: TreeSample
    held: TreeSample
    worker_fds: list[int]
    slab_idle: int | None
    slab_held: int | None

    @property
    def ok(self) -> bool:
        conns = self.plan.conns
        load = self.load
        return (load.connected, load.served_first, load.served_again) == (
            conns,
            conns,
            conns,
        ) and not load.errors

    @property
    def rss_per_connection(self) -> float:
        """The server's RSS growth per connection it held (answered once) when sampled."""
        return (self.held.rss_bytes - self.idle.rss_bytes) / max(1, self.load.served_first)

    @property
    def kernel_memory_per_connection(self) -> float | None:
        """Kernel socket objects per connection, both ends together (None: unknown)."""
        if self.slab_idle is None or self.slab_held is None:
            return None
        return (self.slab_held - self.slab_idle) / max(1, self.load.served_first)

    def lines(self) -> list[str]:
        load, plan = self.load, self.plan
        again_rate = load.served_again / load.again_seconds if load.again_seconds else 0.0
        connect_rate = load.connected / load.connect_seconds if load.connect_seconds else 0.0
        errors = ", ".join(f"{k} {v:,}" for k, v in load.errors.items()) or "none"
        fds = ", ".join(f"{n:,}" for n in self.worker_fds)
        return [
            f"server: {' '.join(self.command[self.command.index('-m') + 1 :])}",
            f"load: {plan.load_procs} processes from {len(plan.sources)} source addresses "
            f"({plan.sources[0]}..{plan.sources[-1]})",
            f"connected {load.connected:,}/{plan.conns:,} in {load.connect_seconds:.1f} s "
            f"({connect_rate:,.0f}/s), each answered a GET: {load.served_first:,}",
            f"after the idle period, a GET on every connection: {load.served_again:,} answered "
            f"in {load.again_seconds:.2f} s ({again_rate:,.0f}/s), latency p50 "
            f"{load.latency.percentile(0.5) / 1e6:.0f} ms p99 "
            f"{load.latency.percentile(0.99) / 1e6:.0f} ms",
            f"errors: {errors}",
            f"server: {len(self.held.pids)} processes, {self.held.fds:,} fds (per process: "
            f"{fds}), RSS {self.idle.rss_bytes / 2**20:.1f} -> {self.held.rss_bytes / 2**20:.1f}"
            f" MiB = {self.rss_per_connection / 1024:.2f} KiB per connection",
            self._kernel_line(),
            "target (every connection served twice, zero errors): "
            + ("ok" if self.ok else "FAILED"),
        ]

    def _kernel_line(self) -> str:
        per_connection = self.kernel_memory_per_connection
        if per_connection is None:
            return "kernel: /proc/slabinfo not readable (root only), socket memory unknown"
        return (
            f"kernel: {per_connection / 1024:.2f} KiB of socket objects per connection, both "
            f"ends ({', '.join(SOCKET_SLABS)} in /proc/slabinfo)"
        )

    def shortfall(self) -> list[str]:
        """What the errors say limited the run (empty when it reached the target)."""
        found = []
        for kind, count in self.load.errors.items():
            hint = LIMIT_HINTS.get(kind, "see the server's output")
            found.append(f"{kind} x{count:,}: {hint}")
        if self.load.connected < self.plan.conns and not found:
            found.append("fewer connections than planned, with no error recorded")
        return found


def server_command(port: int, plan: Plan, poller: str | None = None) -> list[str]:
    """``ioreactor serve`` for the plan; its timeouts outlast the run."""
    command = [sys.executable, "-m", "ioreactor", "serve", "--listen", f"{SERVER_HOST}:{port}"]
    command += ["--workers", str(plan.workers), "--backlog", str(plan.backlog)]
    command += ["--keepalive-timeout", "3600", "--header-timeout", "600"]
    return command + (["--poller", poller] if poller else [])


def listeners(port: int) -> int:
    """Sockets in the LISTEN state on ``port`` (one per SO_REUSEPORT worker)."""
    count = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
            count += 1
    return count


def run_c100k(
    plan: Plan,
    idle: float = IDLE,
    *,
    poller: str | None = None,
    connect_timeout: float = CONNECT_TIMEOUT,
    server_prefix: Sequence[str] = (),
    progress: bool = True,
) -> C100kReport:
    """Run the plan against a fresh ``ioreactor serve`` (run through ``server_prefix``,
    e.g. ``prlimit --nofile=...``, when given); the report."""
    from ioreactor_tools.bench.procstat import process_fds

    def say(text: str) -> None:
        if progress:
            print(text, flush=True)

    raise_nofile_limit()
    port = free_port(SERVER_HOST)
    command = [*server_prefix, *server_command(port, plan, poller)]
    with ServerProcess(command, port=port, host=SERVER_HOST, ready_timeout=READY_TIMEOUT) as server:
        deadline = time.monotonic() + READY_TIMEOUT
        while listeners(port) < plan.workers:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{plan.workers} workers not all listening on {port}")
            time.sleep(0.05)
        time.sleep(0.5)  # let the fresh workers settle before the idle sample
        idle_sample = server.sample()
        slab_idle = kernel_socket_memory()
        # Every process cycles over every source (the kernel picks ports per 4-tuple
        # across processes), each from its own first one: the sources fill evenly.
        sources = plan.sources
        shares = [
            Share(
                SERVER_HOST,
                port,
                conns,
                sources[i % len(sources) :] + sources[: i % len(sources)],
                connect_timeout=connect_timeout,
            )
            for i, conns in enumerate(split_conns(plan.conns, plan.load_procs))
        ]
        say(f"connecting {plan.conns:,} from {plan.load_procs} processes ...")
        with _LoadProcesses(shares) as loads:
            loads.wait_all("held")
            held = server.sample(count_fds=True)
            slab_held = kernel_socket_memory()
            worker_fds = [process_fds(pid) for pid in held.pids]
            say(f"held; idle for {idle:g} s ...")
            time.sleep(idle)
            say("a GET on every connection ...")
            results = loads.go()
    report = C100kReport(
        plan=plan,
        command=command,
        load=ShareResult.merge(results),
        idle=idle_sample,
        held=held,
        worker_fds=worker_fds,
        slab_idle=slab_idle,
        slab_held=slab_held,
    )
    return report


class _LoadProcesses:
    """The load processes (spawned) and the pipe to each; killed if still there at exit."""

    def __init__(self, shares: Sequence[Share]) -> None:
        import multiprocessing

        ctx = multiprocessing.get_context("spawn")
        self.deadline = time.monotonic() + PROCESS_TIMEOUT
        self.children = []
        for share in shares:
            parent_end, child_end = ctx.Pipe()
            proc = ctx.Process(target=_load_main, args=(share, child_end), daemon=True)
            proc.start()
            child_end.close()
            self.children.append((proc, parent_end))

    def __enter__(self) -> _LoadProcesses:
        return self

    def __exit__(self, *exc: object) -> None:
        for _, pipe in self.children:
            pipe.close()  # a child waiting for a word sees EOF and exits
        for proc, _ in self.children:
            proc.join(30)
            if proc.is_alive():
                proc.kill()
                proc.join()

    def wait_all(self, want: str) -> list[Any]:
        """Each child's ``(want, value)`` message, in order; raise on failure or timeout."""
        values = []
        for proc, pipe in self.children:
            timeout = self.deadline - time.monotonic()
            if timeout <= 0 or not pipe.poll(timeout):
                raise TimeoutError(f"load process {proc.pid} not {want} in time")
            kind, value = receive(pipe, f"load process {proc.pid}")
            if kind != want:
                raise RuntimeError(f"load process {proc.pid}: {kind!r}, expected {want!r}")
            values.append(value)
        return values

    def go(self) -> list[ShareResult]:
        for _, pipe in self.children:
            pipe.send("go")
        results: list[ShareResult] = self.wait_all("done")
        for _, pipe in self.children:
            pipe.send("close")
        return results


# -- command line -----------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    fewest = "(default: the fewest that stay under the fd limit)"
    parser.add_argument(
        "--conns", type=positive_count, default=CONNS, help="concurrent connections"
    )
    parser.add_argument(
        "--workers", type=positive_count, default=None, help=f"server workers {fewest}"
    )
    parser.add_argument(
        "--load-procs", type=positive_count, default=None, help=f"load processes {fewest}"
    )
    parser.add_argument(
        "--sources",
        type=positive_count,
        default=None,
        help="source addresses 127.0.0.2.. (default: enough that none takes over 40 %% of "
        "the ephemeral ports, and at least one per load process)",
    )
    parser.add_argument("--idle", type=seconds_or_zero, default=IDLE, help="seconds held idle")
    parser.add_argument(
        "--backlog", type=positive_count, default=BACKLOG, help="the server's --backlog"
    )
    parser.add_argument(
        "--poller",
        type=one_of(available_pollers(), "poller"),
        default=None,
        help="the server's --poller",
    )
    parser.add_argument("--connect-timeout", type=seconds, default=CONNECT_TIMEOUT)
    parser.add_argument(
        "--force", action="store_true", help="run even when the plan exceeds a limit"
    )


def run(args: argparse.Namespace) -> int:
    limits = KernelLimits.read()
    try:
        plan = make_plan(
            args.conns,
            limits,
            workers=args.workers,
            load_procs=args.load_procs,
            sources=args.sources,
            backlog=args.backlog,
        )
    except ValueError as exc:
        print(f"c100k: {exc}", file=sys.stderr)
        return 2
    print("kernel and process limits:")
    for name, value in limits.rows():
        print(f"  {name:<34} {value}")
    print(
        f"plan: {plan.conns:,} connections, {plan.workers} server workers (up to "
        f"{plan.per_worker():,} each), {plan.load_procs} load processes "
        f"({plan.per_load_process():,} each), {len(plan.sources)} source addresses"
    )
    problems = plan.problems(limits)
    for problem in problems:
        print(f"  limit: {problem}")
    blocking = [p for p in problems if "somaxconn" not in p]
    if blocking and not args.force:
        print("c100k: the plan exceeds a limit (above); --force runs it anyway", file=sys.stderr)
        return 2
    report = run_c100k(plan, args.idle, poller=args.poller, connect_timeout=args.connect_timeout)
    print()
    for line in report.lines():
        print(line)
    for line in report.shortfall():
        print(f"  limited by: {line}")
    return 0 if report.ok else 1
