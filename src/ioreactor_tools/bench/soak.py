"""The soak: many connections of every kind for a long time, every byte checked.

``ioreactor bench soak --conns 20000 --duration 600`` runs two servers pinned to the
server core -- the HTTP echo application and the TCP echo service, each with
``--workers`` processes under the supervisor (:func:`ioreactor.multicore.run_server`,
exactly as ``ioreactor serve`` and ``ioreactor echo`` run them) -- and splits the
connections over several load processes on the load core (one process holds at most
RLIMIT_NOFILE fds). Each load process keeps its share open, replacing any that end:

``keepalive``  HTTP/1.1, one request at a time: ``GET /`` (body ``Hello, World!``) or
               ``POST /echo`` with a body unique to the request (echoed byte for byte)
``pipelined``  the same requests, ``--pipeline`` per write, answered in order
``slow``       slowloris (:mod:`ioreactor_tools.bench.slowloris`): each must be closed by the
               server's header timeout (408 or a close), not sooner, not later
``echo``       TCP echo of a payload unique to the exchange, checked byte for byte

Between two exchanges a connection waits a random think time (mean ``--think``). Every
``--sample`` seconds the parent reads each server's process tree (RSS and open fds, from
``/proc``), the load processes' counters and the servers' loop-lag samples (each worker
logs ``loop.lag()`` once a second into a file: the ``serve`` entry point of this module,
which is ``ioreactor serve`` / ``ioreactor echo`` plus that timer). The report: requests
and echoes served, errors by kind (every one unexplained), the expected closes by kind,
RSS and fds over time (a PNG) with their growth after the warm-up, and the loop lag p99.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import errno
import itertools
import json
import logging
import math
import multiprocessing
import multiprocessing.connection
import os
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httptools

from ioreactor.loop.event_loop import EventLoop
from ioreactor.loop.poller import READ
from ioreactor.net.buffer import Buffer
from ioreactor.net.client import TcpClient
from ioreactor.net.connection import TcpConnection
from ioreactor.net.handlers import Handler
from ioreactor.net.sockopt import raise_nofile_limit
from ioreactor.testing import free_port
from ioreactor_tools.bench.latency import LatencyHistogram
from ioreactor_tools.bench.pinning import ServerProcess, core_plan, pin_current_process
from ioreactor_tools.bench.slowloris import SlowClients, SlowTally, distribution
from ioreactor_tools.children import die_with_parent, receive

if TYPE_CHECKING:
    from ioreactor.multicore import WorkerContext

log = logging.getLogger("ioreactor_tools.bench.soak")

KINDS = ("keepalive", "pipelined", "slow", "echo")
#: Default share of the connections of each kind.
DEFAULT_MIX = {"keepalive": 0.45, "pipelined": 0.15, "slow": 0.10, "echo": 0.30}
#: Connections per load process at most (the fd limit is per process; keep a reserve).
CONNS_PER_PROCESS = 5000
#: Connects in flight at once per load process and kind.
RAMP_BATCH = 256
#: Seconds a request or an echo may wait for its answer before it counts as ``timeout``.
RESPONSE_TIMEOUT = 30.0
#: Seconds the load processes get to finish their exchanges in flight at the end.
DRAIN_TIMEOUT = 10.0
#: The server's keep-alive timeout (``ioreactor serve``'s default): an idle close after
#: it is expected.
KEEPALIVE_TIMEOUT = 30.0
#: Bytes of random data the request bodies and echo payloads are cut from.
POOL_BYTES = 1 << 16
#: Largest POST body and echo payload.
MAX_PAYLOAD = 4096
#: Seconds between two lag samples in each server worker.
LAG_INTERVAL = 1.0
#: RSS or fd growth after the warm-up above this fraction fails the "flat" bar.
FLAT_TOLERANCE = 0.10
HELLO = b"Hello, World!"
#: What the flatness bar is checked on (attributes of :class:`Sample`).
TRACKED = ("http_rss", "echo_rss", "http_fds", "echo_fds")


# -- counting ------------------------------------------------------------------------------


@dataclass
class Tally:
    """What one load process saw (picklable; merged across processes)."""

    #: Exchanges answered and checked, by kind (an HTTP request, an echo).
    served: dict[str, int] = field(default_factory=dict)
    bytes_checked: int = 0
    #: Unexplained: every one is a failure of the soak.
    errors: dict[str, int] = field(default_factory=dict)
    #: Closes the protocol promises (retired after max requests, idle timeout).
    expected: dict[str, int] = field(default_factory=dict)
    connections_opened: dict[str, int] = field(default_factory=dict)
    latency: dict[str, LatencyHistogram] = field(default_factory=dict)
    slow: SlowTally = field(default_factory=SlowTally)

    def count(self, table: dict[str, int], key: str, n: int = 1) -> None:
        table[key] = table.get(key, 0) + n

    def merge(self, other: Tally) -> None:
        for mine, theirs in (
            (self.served, other.served),
            (self.errors, other.errors),
            (self.expected, other.expected),
            (self.connections_opened, other.connections_opened),
        ):
            for key, n in theirs.items():
                self.count(mine, key, n)
        self.bytes_checked += other.bytes_checked
        for kind, hist in other.latency.items():
            self.latency.setdefault(kind, LatencyHistogram()).merge(hist)
        self.slow.merge(other.slow)

    def progress(self) -> dict[str, Any]:
        """The counters only (no histograms): what a process reports while it runs."""
        return {
            "served": dict(self.served),
            "errors": dict(self.errors),
            "slow_closed": self.slow.closed_408 + self.slow.closed_silent,
        }


def _errno_name(exc: BaseException | None) -> str:
    if isinstance(exc, OSError) and exc.errno is not None:
        return errno.errorcode.get(exc.errno, str(exc.errno))
    return type(exc).__name__ if exc is not None else "eof"


# -- the load: fleets of connections that replace themselves -------------------------------


class Fleet(Handler):
    """Keeps ``count`` connections of one kind open to ``address``; subclasses talk."""

    kind = ""

    def __init__(self, load: SoakLoad, address: tuple[str, int], count: int) -> None:
        self.load = load
        self.loop = load.loop
        self.tally = load.tally
        self.address = address
        self.count = count
        self.live: set[TcpConnection] = set()
        #: Connections dropped after an error (counted already, not again when they close).
        self.dropped: set[TcpConnection] = set()
        self.connecting = 0
        self.running = False

    def start(self) -> None:
        self.running = True
        self._top_up()

    def stop(self) -> None:
        self.running = False

    def _top_up(self) -> None:
        while self.running and len(self.live) + self.connecting < self.count:
            if self.connecting >= RAMP_BATCH:
                return
            self.connecting += 1
            TcpClient(
                self.loop,
                self.address,
                self,
                retry=False,
                on_connect_failed=self._connect_failed,
            ).connect()

    def _connect_failed(self, exc: OSError) -> None:
        self.connecting -= 1
        self.tally.count(self.tally.errors, f"connect:{self.kind}:{_errno_name(exc)}")
        if self.running:
            self.loop.call_later(0.5, self._top_up)

    def on_connection(self, conn: TcpConnection) -> None:
        self.connecting -= 1
        self.live.add(conn)
        self.tally.count(self.tally.connections_opened, self.kind)
        self.begin(conn)
        self._top_up()

    def on_close(self, conn: TcpConnection) -> None:
        self.live.discard(conn)
        if conn in self.dropped:
            self.dropped.discard(conn)
        elif not self.load.stopping:
            self.ended(conn)
        if self.running:
            self._top_up()

    def error(self, conn: TcpConnection, what: str) -> None:
        """An unexplained event: count it and drop the connection (out of step now)."""
        self.tally.count(self.tally.errors, f"{what}:{self.kind}")
        self.dropped.add(conn)
        conn.force_close()

    def begin(self, conn: TcpConnection) -> None:
        raise NotImplementedError

    def ended(self, conn: TcpConnection) -> None:
        raise NotImplementedError

    def overdue(self, now: float) -> None:
        """Drop connections whose answer is more than RESPONSE_TIMEOUT late."""


class _HttpExchange:
    """One HTTP connection: the requests in flight and the response being parsed."""

    __slots__ = (
        "body",
        "closing",
        "conn",
        "expected",
        "parser",
        "retired",
        "sent_at",
        "waiting",
    )

    def __init__(self, conn: TcpConnection) -> None:
        self.conn = conn
        self.parser = httptools.HttpResponseParser(self)
        self.expected: collections.deque[bytes] = collections.deque()
        self.body: list[bytes] = []
        self.closing = False  # this response says Connection: close
        self.retired = False  # the server retired the connection (as it promised to)
        self.sent_at = 0.0
        self.waiting: Fleet | None = None

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() == b"connection" and value.lower() == b"close":
            self.closing = True

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        fleet = self.waiting
        assert isinstance(fleet, HttpFleet)
        fleet.answered(self)


class HttpFleet(Fleet):
    """Keep-alive HTTP (``depth`` 1) or pipelined (``depth`` > 1) request batches."""

    def __init__(self, load: SoakLoad, address: tuple[str, int], count: int, depth: int) -> None:
        super().__init__(load, address, count)
        self.depth = depth
        self.kind = "keepalive" if depth == 1 else "pipelined"
        self.host = f"{address[0]}:{address[1]}".encode()

    def begin(self, conn: TcpConnection) -> None:
        exchange = _HttpExchange(conn)
        exchange.waiting = self
        conn.context = exchange
        self.send_batch(exchange)

    def send_batch(self, exchange: _HttpExchange) -> None:
        conn = exchange.conn
        if conn.closed or not self.running:
            return
        load = self.load
        parts = []
        for _ in range(self.depth):
            if load.rng.random() < 0.5:
                parts.append(b"GET / HTTP/1.1\r\nHost: %s\r\n\r\n" % self.host)
                exchange.expected.append(HELLO)
            else:
                body = load.payload()
                parts.append(
                    b"POST /echo HTTP/1.1\r\nHost: %s\r\nContent-Type: application/x-soak\r\n"
                    b"Content-Length: %d\r\n\r\n%s" % (self.host, len(body), body)
                )
                exchange.expected.append(body)
        exchange.sent_at = self.loop.time()
        conn.send(b"".join(parts))

    def on_message(self, conn: TcpConnection, buffer: Buffer) -> None:
        exchange: _HttpExchange = conn.context
        try:
            with buffer.peek() as data:
                exchange.parser.feed_data(data)
        except httptools.HttpParserError:
            buffer.retrieve_all()
            self.error(conn, "parse")
            return
        buffer.retrieve_all()

    def answered(self, exchange: _HttpExchange) -> None:
        conn = exchange.conn
        body = b"".join(exchange.body)
        exchange.body.clear()
        status = exchange.parser.get_status_code()
        if not exchange.expected:
            self.error(conn, "unrequested-response")
            return
        want = exchange.expected.popleft()
        if status != 200:
            self.error(conn, f"status-{status}")
            return
        if body != want:
            self.error(conn, "mismatch")
            return
        tally = self.tally
        tally.count(tally.served, self.kind)
        tally.bytes_checked += len(body)
        if exchange.closing:
            exchange.retired = True  # max requests reached: the server said so
            return
        if not exchange.expected:
            now = self.loop.time()
            hist = tally.latency.setdefault(self.kind, LatencyHistogram())
            hist.record(int((now - exchange.sent_at) * 1e9))
            self.loop.call_later(self.load.think(), self.send_batch, exchange)

    def ended(self, conn: TcpConnection) -> None:
        exchange: _HttpExchange = conn.context
        tally = self.tally
        if exchange.retired:
            tally.count(tally.expected, f"retired:{self.kind}")
        elif exchange.expected:
            tally.count(tally.errors, f"closed:{self.kind}:{_errno_name(conn.error)}")
        elif self.loop.time() - exchange.sent_at >= KEEPALIVE_TIMEOUT - 1:
            tally.count(tally.expected, f"idle-timeout:{self.kind}")
        else:
            tally.count(tally.errors, f"closed-idle:{self.kind}:{_errno_name(conn.error)}")

    def overdue(self, now: float) -> None:
        for conn in list(self.live):
            exchange: _HttpExchange = conn.context
            if exchange.expected and now - exchange.sent_at > RESPONSE_TIMEOUT:
                self.error(conn, "timeout")


class _Echo:
    __slots__ = ("expected", "pos", "sent_at")

    def __init__(self) -> None:
        self.expected = b""
        self.pos = 0
        self.sent_at = 0.0


class EchoFleet(Fleet):
    """TCP echo ping-pong with a payload unique to each exchange."""

    kind = "echo"

    def begin(self, conn: TcpConnection) -> None:
        conn.context = _Echo()
        self.send_next(conn)

    def send_next(self, conn: TcpConnection) -> None:
        if conn.closed or not self.running:
            return
        echo: _Echo = conn.context
        echo.expected = self.load.payload()
        echo.pos = 0
        echo.sent_at = self.loop.time()
        conn.send(echo.expected)

    def on_message(self, conn: TcpConnection, buffer: Buffer) -> None:
        echo: _Echo = conn.context
        data = buffer.read_all()
        end = echo.pos + len(data)
        if end > len(echo.expected) or echo.expected[echo.pos : end] != data:
            self.error(conn, "mismatch")
            return
        echo.pos = end
        if end == len(echo.expected):
            tally = self.tally
            tally.count(tally.served, self.kind)
            tally.bytes_checked += end
            hist = tally.latency.setdefault(self.kind, LatencyHistogram())
            hist.record(int((self.loop.time() - echo.sent_at) * 1e9))
            echo.expected = b""
            self.loop.call_later(self.load.think(), self.send_next, conn)

    def ended(self, conn: TcpConnection) -> None:
        self.tally.count(self.tally.errors, f"closed:{self.kind}:{_errno_name(conn.error)}")

    def overdue(self, now: float) -> None:
        for conn in list(self.live):
            echo: _Echo = conn.context
            if echo.expected and now - echo.sent_at > RESPONSE_TIMEOUT:
                self.error(conn, "timeout")


@dataclass(frozen=True)
class LoadShare:
    """One load process's part of the soak."""

    index: int
    http: tuple[str, int]
    echo: tuple[str, int]
    counts: dict[str, int]
    think: float
    pipeline: int
    slow_interval: float
    header_timeout: float
    report_interval: float
    poller: str | None = None


class SoakLoad:
    """One load process: its fleets on one loop, reporting to the parent over a pipe."""

    def __init__(self, share: LoadShare, pipe: multiprocessing.connection.Connection) -> None:
        self.share = share
        self.pipe = pipe
        # thousands of ready connections per iteration are normal here, not a stall
        self.loop = EventLoop(
            share.poller, name=f"soak-load-{share.index}", slow_iteration=math.inf
        )
        self.tally = Tally()
        self.rng = random.Random(share.index)
        self.pool = self.rng.randbytes(POOL_BYTES)
        self.stopping = False
        self.exchanges = 0
        counts = share.counts
        self.fleets: list[Fleet] = [
            HttpFleet(self, share.http, counts["keepalive"], 1),
            HttpFleet(self, share.http, counts["pipelined"], share.pipeline),
            EchoFleet(self, share.echo, counts["echo"]),
        ]
        self.slow = SlowClients(
            self.loop,
            share.http,
            counts["slow"],
            interval=share.slow_interval,
            header_timeout=share.header_timeout,
            tally=self.tally.slow,
        )

    def think(self) -> float:
        return self.rng.uniform(0, 2 * self.share.think)

    def payload(self) -> bytes:
        """A payload no other exchange of the soak carries: a tag naming this process
        and exchange, then random bytes (so a response delivered to the wrong request
        or connection, or corrupted, cannot pass for the right one)."""
        rng = self.rng
        size = rng.randint(16, MAX_PAYLOAD)
        start = rng.randrange(POOL_BYTES - size)
        self.exchanges += 1
        return b"%d:%d|" % (self.share.index, self.exchanges) + self.pool[start : start + size]

    @property
    def live(self) -> int:
        return sum(len(f.live) for f in self.fleets) + self.slow.live

    def run(self) -> None:
        loop = self.loop
        loop.watch(self.pipe.fileno(), READ, self._on_pipe)
        for fleet in self.fleets:
            loop.call_soon(fleet.start)
        if self.share.counts["slow"]:
            loop.call_soon(self.slow.start)
        loop.call_every(self.share.report_interval, self._report)
        loop.call_every(5.0, self._check_overdue)
        loop.run()

    def _report(self) -> None:
        self.pipe.send(("progress", (self.live, self.tally.progress())))

    def _check_overdue(self) -> None:
        now = self.loop.time()
        for fleet in self.fleets:
            fleet.overdue(now)

    def _on_pipe(self, events: int) -> None:
        if self.pipe.recv() != "stop":
            return
        self.loop.unwatch(self.pipe.fileno())
        for fleet in self.fleets:
            fleet.stop()
        self.slow.stop()
        deadline = self.loop.time() + DRAIN_TIMEOUT
        self.loop.call_every(0.1, self._drain, deadline)

    def _drain(self, deadline: float) -> None:
        """Stop when nothing is in flight (or at the deadline), then close everything."""
        busy = any(
            conn.context is not None and (getattr(conn.context, "expected", None) or False)
            for fleet in self.fleets
            for conn in fleet.live
        )
        if busy and self.loop.time() < deadline:
            return
        self.stopping = True
        if busy:
            self.tally.count(self.tally.errors, "unanswered-at-end")
        for fleet in self.fleets:
            for conn in list(fleet.live):
                conn.force_close()
        self.slow.close()
        self.pipe.send(("done", self.tally))
        self.loop.stop()


def _load_main(
    share: LoadShare, pipe: multiprocessing.connection.Connection, core: int | None
) -> None:
    die_with_parent()
    pin_current_process(core)
    raise_nofile_limit()
    try:
        SoakLoad(share, pipe).run()
    except BaseException as exc:
        pipe.send(("failed", repr(exc)))
        raise


# -- the servers: ioreactor serve / echo plus a lag sampler --------------------------------


def serve_main(argv: list[str] | None = None) -> int:
    """``python -m ioreactor_tools.bench.soak serve --app http|echo ...``: run_server as the
    CLI commands do, and append ``loop.lag()`` of every worker to ``--lag-file`` each
    ``LAG_INTERVAL`` as JSON lines."""
    parser = argparse.ArgumentParser(prog="python -m ioreactor_tools.bench.soak serve")
    parser.add_argument("--app", choices=("http", "echo"), required=True)
    parser.add_argument("--listen", required=True)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--header-timeout", type=float, default=10.0)
    parser.add_argument("--lag-file", required=True)
    parser.add_argument("--poller", default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    from ioreactor.multicore import run_server

    make_handler: Callable[[], Handler]
    if args.app == "http":
        from ioreactor.http.echo_app import build_echo_app
        from ioreactor.http.handler import HttpHandler
        from ioreactor.http.limits import Limits

        app = build_echo_app()
        limits = Limits(
            header_timeout=args.header_timeout, sweep_interval=min(1.0, args.header_timeout / 2)
        )

        def make_handler() -> Handler:
            return HttpHandler(app, limits)
    else:
        from ioreactor.echo import EchoHandler

        make_handler = EchoHandler
    lag_file = args.lag_file

    def sample_lag(ctx: WorkerContext) -> None:
        lag = ctx.loop.lag()
        line = json.dumps(
            {
                "t": time.time(),
                "worker": ctx.index,
                "pid": ctx.pid,
                "p99": lag.p99,
                "max": lag.max,
                "slow": lag.slow_iterations,
                "iterations": lag.iterations,
            }
        )
        with open(lag_file, "a") as f:  # one short O_APPEND write: lines never interleave
            f.write(line + "\n")

    def on_worker_start(ctx: WorkerContext) -> None:
        ctx.loop.call_every(LAG_INTERVAL, sample_lag, ctx)

    return run_server(
        make_handler,
        args.listen,
        workers=args.workers,
        poller=args.poller,
        on_worker_start=on_worker_start,
    )


def server_command(app: str, port: int, config: SoakConfig, lag_file: Path) -> list[str]:
    command = [sys.executable, "-m", "ioreactor_tools.bench.soak", "serve", "--app", app]
    command += ["--listen", f"127.0.0.1:{port}", "--workers", str(config.workers)]
    command += ["--header-timeout", str(config.header_timeout), "--lag-file", str(lag_file)]
    return command + (["--poller", config.poller] if config.poller else [])


# -- the run -------------------------------------------------------------------------------


@dataclass(frozen=True)
class SoakConfig:
    conns: int = 20_000
    duration: float = 600.0
    mix: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_MIX))
    think: float = 2.0
    pipeline: int = 4
    slow_interval: float = 2.0
    header_timeout: float = 10.0
    workers: int = 2
    procs: int = 0  # 0: enough for CONNS_PER_PROCESS each
    sample: float = 5.0
    warmup: float = 0.0  # 0: half the duration
    poller: str | None = None

    def __post_init__(self) -> None:
        if self.conns < 1 or self.workers < 1 or self.pipeline < 1:
            raise ValueError("conns, workers and pipeline must be at least 1")
        if (
            min(self.duration, self.think, self.slow_interval, self.header_timeout, self.sample)
            <= 0
        ):
            raise ValueError("durations must be > 0")
        unknown = set(self.mix) - set(KINDS)
        if unknown or not self.mix or min(self.mix.values()) < 0 or sum(self.mix.values()) <= 0:
            raise ValueError(f"mix: shares of {', '.join(KINDS)}, got {self.mix}")

    @property
    def processes(self) -> int:
        return self.procs or max(1, math.ceil(self.conns / CONNS_PER_PROCESS))

    @property
    def warmup_seconds(self) -> float:
        """Samples before this are not held against flatness: the heap and the buffers
        grow to the high-water mark of the load first (bursts, a shared CPU)."""
        return self.warmup or self.duration / 2

    def counts(self) -> dict[str, int]:
        """Connections of each kind (largest remainders: they add up to ``conns``)."""
        total = sum(self.mix.values())
        exact = {k: self.conns * self.mix.get(k, 0.0) / total for k in KINDS}
        counts = {k: int(v) for k, v in exact.items()}
        for k in sorted(KINDS, key=lambda k: exact[k] - counts[k], reverse=True):
            if sum(counts.values()) >= self.conns:
                break
            counts[k] += 1
        return counts


def parse_mix(text: str) -> dict[str, float]:
    """``keepalive=0.5,echo=0.5``: the share of each kind (missing kinds: none)."""
    mix: dict[str, float] = {}
    for part in text.split(","):
        name, _, value = part.partition("=")
        if name not in KINDS:
            raise ValueError(f"unknown kind {name!r}; kinds: {', '.join(KINDS)}")
        mix[name] = float(value)
    return mix


@dataclass
class Sample:
    """One reading of the run, every ``sample`` seconds."""

    t: float
    live: int
    served: int
    errors: int
    http_rss: int
    echo_rss: int
    http_fds: int
    echo_fds: int
    lag_p99: float  # the largest p99 any worker logged since the previous sample


@dataclass
class SoakReport:
    config: SoakConfig
    command: str
    started: str
    ramp_seconds: float
    duration: float
    tally: Tally
    samples: list[Sample]
    lag_p99s: list[float]
    lag_max: float
    slow_iterations: int
    server_status: dict[str, int | None]
    png: str | None = None

    @property
    def served(self) -> int:
        return sum(self.tally.served.values())

    @property
    def error_count(self) -> int:
        slow = self.tally.slow
        return sum(self.tally.errors.values()) + slow.early + slow.overdue

    def _after_warmup(self) -> list[Sample]:
        return [s for s in self.samples if s.t >= self.config.warmup_seconds]

    def growth(self, attribute: str) -> float:
        """Relative change of ``attribute`` from just after the warm-up to the end (the
        medians of the first and last fifth of the samples after warm-up)."""
        after = self._after_warmup()
        if len(after) < 2:
            return math.nan
        fifth = max(1, len(after) // 5)
        first = sorted(getattr(s, attribute) for s in after[:fifth])[fifth // 2]
        last = sorted(getattr(s, attribute) for s in after[-fifth:])[fifth // 2]
        return (last - first) / first if first else math.nan

    def slope(self, attribute: str) -> float:
        """Least-squares trend of ``attribute`` per minute after the warm-up: a leak
        shows as a steady positive slope, a one-off rise (a burst that grew the heap) as
        growth with a slope near zero."""
        after = self._after_warmup()
        if len(after) < 2:
            return math.nan
        n = len(after)
        mean_t = sum(s.t for s in after) / n
        mean_v = sum(getattr(s, attribute) for s in after) / n
        var = sum((s.t - mean_t) ** 2 for s in after)
        cov = sum((s.t - mean_t) * (getattr(s, attribute) - mean_v) for s in after)
        return 60 * cov / var if var else math.nan

    def lag_p99(self, q: float = 0.5) -> float:
        """A quantile of the per-sample lag p99s (seconds)."""
        if not self.lag_p99s:
            return math.nan
        ordered = sorted(self.lag_p99s)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    @property
    def flat(self) -> bool:
        growths = [self.growth(a) for a in TRACKED]
        return all(not math.isnan(g) and g <= FLAT_TOLERANCE for g in growths)

    def to_dict(self) -> dict[str, Any]:
        tally = self.tally
        slow = tally.slow
        return {
            "command": self.command,
            "started": self.started,
            "config": dataclasses.asdict(self.config),
            "ramp_seconds": self.ramp_seconds,
            "duration": self.duration,
            "served": dict(tally.served),
            "bytes_checked": tally.bytes_checked,
            "errors": dict(tally.errors),
            "expected_closes": dict(tally.expected),
            "connections_opened": dict(tally.connections_opened),
            "latency_us": {
                kind: {
                    "p50": h.percentile(0.5) / 1000,
                    "p99": h.percentile(0.99) / 1000,
                    "max": h.max / 1000,
                }
                for kind, h in tally.latency.items()
            },
            "slow": {
                "opened": slow.opened,
                "closed_408": slow.closed_408,
                "closed_silent": slow.closed_silent,
                "other": slow.other,
                "early": slow.early,
                "overdue": slow.overdue,
                "lifetime": distribution(slow.lifetimes),
                "from_target": distribution(slow.head_times),
            },
            "growth_after_warmup": {a: self.growth(a) for a in TRACKED},
            "slope_per_minute_after_warmup": {a: self.slope(a) for a in TRACKED},
            "loop_lag_ms": {
                "p99_median": self.lag_p99(0.5) * 1000,
                "p99_max": self.lag_p99(1.0) * 1000,
                "max": self.lag_max * 1000,
                "slow_iterations": self.slow_iterations,
            },
            "server_status": self.server_status,
            "samples": [dataclasses.asdict(s) for s in self.samples],
            "png": self.png,
        }


class _LagReader:
    """Reads the lag lines the server workers append to a file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.last: dict[tuple[int, int], dict[str, Any]] = {}

    def read(self) -> list[dict[str, Any]]:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            return []
        end = data.rfind(b"\n") + 1
        self.offset += end
        lines = [json.loads(line) for line in data[:end].splitlines() if line]
        for line in lines:
            self.last[(line["pid"], line["worker"])] = line
        return lines


class _Loads:
    """The load processes and their pipes."""

    def __init__(self, shares: list[LoadShare], core: int | None) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.procs = []
        self.pipes: list[multiprocessing.connection.Connection] = []
        self.live = [0] * len(shares)
        self.progress: list[dict[str, Any]] = [{} for _ in shares]
        self.finals: dict[int, Tally] = {}
        for share in shares:
            parent_end, child_end = ctx.Pipe()
            proc = ctx.Process(target=_load_main, args=(share, child_end, core), daemon=True)
            proc.start()
            child_end.close()
            self.procs.append(proc)
            self.pipes.append(parent_end)

    def poll(self, timeout: float) -> None:
        for ready in multiprocessing.connection.wait(self.pipes, timeout):
            assert isinstance(ready, multiprocessing.connection.Connection)
            i = self.pipes.index(ready)
            kind, value = receive(ready, f"load process {i}")
            if kind == "progress":
                self.live[i], self.progress[i] = value
            elif kind == "done":
                self.finals[i] = value

    def served(self) -> int:
        return sum(sum(p.get("served", {}).values()) for p in self.progress)

    def errors(self) -> int:
        return sum(sum(p.get("errors", {}).values()) for p in self.progress)

    def stop(self, timeout: float) -> Tally:
        for pipe in self.pipes:
            pipe.send("stop")
        deadline = time.monotonic() + timeout
        while len(self.finals) < len(self.pipes):
            if time.monotonic() > deadline:
                raise TimeoutError("load processes did not finish")
            self.poll(0.5)
        total = Tally()
        for i in sorted(self.finals):
            total.merge(self.finals[i])
        return total

    def close(self) -> None:
        for pipe in self.pipes:
            pipe.close()
        for proc in self.procs:
            proc.join(10)
            if proc.is_alive():
                proc.kill()
                proc.join()


def shares_of(config: SoakConfig, http: tuple[str, int], echo: tuple[str, int]) -> list[LoadShare]:
    counts = config.counts()
    n = config.processes
    shares = []
    for i in range(n):
        part = {k: counts[k] // n + (1 if i < counts[k] % n else 0) for k in KINDS}
        shares.append(
            LoadShare(
                index=i,
                http=http,
                echo=echo,
                counts=part,
                think=config.think,
                pipeline=config.pipeline,
                slow_interval=config.slow_interval,
                header_timeout=config.header_timeout,
                report_interval=min(1.0, config.sample),
                poller=config.poller,
            )
        )
    return shares


def run_soak(
    config: SoakConfig,
    *,
    command: str = "",
    workdir: Path,
    on_sample: Callable[[Sample], object] | None = None,
) -> SoakReport:
    """Run the soak of ``config``; the lag files go to ``workdir``."""
    plan = core_plan()
    http_port, echo_port = free_port(), free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    http_lag = workdir / f"soak-lag-http-{stamp}-{os.getpid()}.jsonl"
    echo_lag = workdir / f"soak-lag-echo-{stamp}-{os.getpid()}.jsonl"
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    wanted = sum(config.counts().values())
    http_server = ServerProcess(
        server_command("http", http_port, config, http_lag), port=http_port, core=plan.server
    )
    echo_server = ServerProcess(
        server_command("echo", echo_port, config, echo_lag), port=echo_port, core=plan.server
    )
    samples: list[Sample] = []
    lag_p99s: list[float] = []
    readers = [_LagReader(http_lag), _LagReader(echo_lag)]
    with http_server, echo_server:
        pin_current_process(plan.load)
        loads = _Loads(
            shares_of(config, ("127.0.0.1", http_port), ("127.0.0.1", echo_port)), plan.load
        )
        try:
            ramp_start = time.monotonic()
            ramp_deadline = ramp_start + 60 + wanted / 200
            while sum(loads.live) < wanted and time.monotonic() < ramp_deadline:
                loads.poll(0.5)
            ramp = time.monotonic() - ramp_start
            start = time.monotonic()
            next_sample = start
            while True:
                now = time.monotonic()
                if now >= next_sample:
                    http = http_server.sample()
                    echo = echo_server.sample()
                    lines = [line for r in readers for line in r.read()]
                    p99 = max((line["p99"] for line in lines), default=math.nan)
                    lag_p99s.extend(line["p99"] for line in lines)
                    sample = Sample(
                        t=now - start,
                        live=sum(loads.live),
                        served=loads.served(),
                        errors=loads.errors(),
                        http_rss=http.rss_bytes,
                        echo_rss=echo.rss_bytes,
                        http_fds=http.fds,
                        echo_fds=echo.fds,
                        lag_p99=p99,
                    )
                    samples.append(sample)
                    if on_sample is not None:
                        on_sample(sample)
                    next_sample += config.sample
                if now - start >= config.duration:
                    break
                loads.poll(max(0.0, min(next_sample, start + config.duration) - now))
            duration = time.monotonic() - start
            tally = loads.stop(DRAIN_TIMEOUT + config.header_timeout + 60)
        finally:
            loads.close()
        for reader in readers:
            reader.read()
        status = {"http": http_server.stop(), "echo": echo_server.stop()}
    lasts = [line for r in readers for line in r.last.values()]
    return SoakReport(
        config=config,
        command=command,
        started=started,
        ramp_seconds=ramp,
        duration=duration,
        tally=tally,
        samples=samples,
        lag_p99s=lag_p99s,
        lag_max=max((line["max"] for line in lasts), default=math.nan),
        slow_iterations=sum(line["slow"] for line in lasts),
        server_status=status,
    )


def plot(report: SoakReport, path: Path) -> Path | None:
    """RSS, open fds, throughput and loop lag over time (None without matplotlib)."""
    import importlib.util

    if importlib.util.find_spec("matplotlib") is None or not report.samples:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = report.samples
    t = [x.t for x in s]
    fig, axes = plt.subplots(2, 2, figsize=(12, 7), sharex=True)
    ax = axes[0][0]
    ax.plot(t, [x.http_rss / 2**20 for x in s], label="HTTP server")
    ax.plot(t, [x.echo_rss / 2**20 for x in s], label="echo server")
    ax.set_ylabel("RSS MiB (process tree)")
    ax.set_ylim(bottom=0)
    ax.legend()
    ax = axes[0][1]
    ax.plot(t, [x.http_fds for x in s], label="HTTP server")
    ax.plot(t, [x.echo_fds for x in s], label="echo server")
    ax.plot(t, [x.live for x in s], label="client connections", linestyle=":")
    ax.set_ylabel("open fds")
    ax.set_ylim(bottom=0)
    ax.legend()
    ax = axes[1][0]
    rates = [
        (b.served - a.served) / (b.t - a.t) if b.t > a.t else 0.0 for a, b in itertools.pairwise(s)
    ]
    ax.plot(t[1:], rates)
    ax.set_ylabel("exchanges/s (all kinds)")
    ax.set_xlabel("seconds")
    ax.set_ylim(bottom=0)
    ax = axes[1][1]
    ax.plot(t, [x.lag_p99 * 1000 for x in s])
    ax.set_ylabel("loop lag p99, ms (worst worker)")
    ax.set_xlabel("seconds")
    ax.set_ylim(bottom=0)
    for row in axes:
        for a in row:
            a.axvline(report.config.warmup_seconds, color="grey", linewidth=0.5)
    fig.suptitle(report.command or "ioreactor bench soak", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


if __name__ == "__main__":
    if sys.argv[1:2] != ["serve"]:
        raise SystemExit("usage: python -m ioreactor_tools.bench.soak serve --app http|echo ...")
    sys.exit(serve_main(sys.argv[2:]))
