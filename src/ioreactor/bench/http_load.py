"""The HTTP load generator of ``ioreactor bench http``, built on ioreactor's own loop.

Each connection keeps ``pipeline`` requests in flight: it writes them in one send (one
request when ``pipeline`` is 1: plain keep-alive ping-pong), parses the responses with
httptools, records each request's latency from that write to its response, and writes
the next batch once all of them are answered. A response that is not 2xx counts as a
``status:NNN`` error, a malformed one as ``parse``, a connection the server closes as
``closed:...``.

Phases, as in the echo load: ramp-up in batches, an unmeasured warm-up, then the window
bracketed by ``on_start``/``on_end`` (where the benchmark reads the server's CPU), then
a drain of the requests in flight. Requests *sent* in the window and answered are
counted. ``procs > 1`` splits the connections over that many processes (each has its
own fd limit: 20,000 connections need two) and merges their results.

:func:`run_wrk` drives the same workload with wrk instead, when it is installed.
"""

from __future__ import annotations

import collections
import errno
import math
import multiprocessing
import multiprocessing.connection
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import httptools
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from ioreactor.bench.latency import LatencyHistogram
from ioreactor.loop.event_loop import EventLoop
from ioreactor.net.buffer import Buffer
from ioreactor.net.client import TcpClient
from ioreactor.net.connection import TcpConnection
from ioreactor.net.handler import Handler
from ioreactor.net.sockopt import raise_nofile_limit

#: Connections started at once during ramp-up.
RAMP_BATCH = 256
#: Seconds one connect may take before it counts as ``connect:ETIMEDOUT``.
CONNECT_TIMEOUT = 10.0
#: Seconds to wait for the requests in flight when the window closes.
DRAIN_TIMEOUT = 5.0
#: How often a load process reports progress.
PROGRESS_INTERVAL = 0.25
#: Seconds the parent waits on a load process beyond the run's own length.
PROCESS_SLACK = 60.0

RAMP, WARMUP, READY, MEASURE, DRAIN, CLOSING = range(6)


@dataclass(frozen=True)
class HttpLoadConfig:
    host: str
    port: int
    conns: int = 100
    duration: float = 10.0
    warmup: float = 1.0
    pipeline: int = 1
    path: str = "/"
    procs: int = 1
    poller: str | None = None
    ramp_batch: int = RAMP_BATCH
    connect_timeout: float = CONNECT_TIMEOUT
    drain_timeout: float = DRAIN_TIMEOUT

    def __post_init__(self) -> None:
        for name in ("conns", "pipeline", "procs", "ramp_batch"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.duration <= 0 or self.warmup < 0:
            raise ValueError("duration must be > 0 and warmup >= 0")
        if self.procs > self.conns:
            raise ValueError(f"procs ({self.procs}) must not exceed conns ({self.conns})")

    def request_bytes(self) -> bytes:
        """``pipeline`` GET requests, as wrk writes them."""
        one = f"GET {self.path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n\r\n".encode()
        return one * self.pipeline


@dataclass
class HttpLoadResult:
    """What the load saw: ``requests`` sent in the window and answered 2xx."""

    conns: int
    connected: int
    requests: int
    duration: float
    latency: LatencyHistogram
    errors: dict[str, int] = field(default_factory=dict)
    procs: int = 1

    @property
    def requests_per_s(self) -> float:
        return self.requests / self.duration if self.duration > 0 else 0.0

    def latency_us(self, q: float) -> float:
        return self.latency.percentile(q) / 1000.0

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    @classmethod
    def merge(cls, parts: list[HttpLoadResult]) -> HttpLoadResult:
        errors: collections.Counter[str] = collections.Counter()
        for p in parts:
            errors.update(p.errors)
        return cls(
            conns=sum(p.conns for p in parts),
            connected=sum(p.connected for p in parts),
            requests=sum(p.requests for p in parts),
            duration=max(p.duration for p in parts),
            latency=LatencyHistogram.merged(p.latency for p in parts),
            errors=dict(errors),
            procs=sum(p.procs for p in parts),
        )

    def summary(self) -> str:
        errors = ", ".join(f"{k} {v}" for k, v in sorted(self.errors.items())) or "none"
        return (
            f"{self.connected:,}/{self.conns:,} connections, {self.requests:,} requests in "
            f"{self.duration:.2f} s = {self.requests_per_s:,.0f} req/s; latency µs "
            f"p50 {self.latency_us(0.5):,.0f} p99 {self.latency_us(0.99):,.0f} "
            f"max {self.latency.max / 1000:,.0f}; errors: {errors}"
        )


def _errno_kind(prefix: str, exc: BaseException | None) -> str:
    if isinstance(exc, OSError) and exc.errno is not None:
        return f"{prefix}:{errno.errorcode.get(exc.errno, str(exc.errno))}"
    return f"{prefix}:{type(exc).__name__}" if exc is not None else f"{prefix}:eof"


class _Exchange:
    """One connection's responses: the httptools callbacks and the batch in flight."""

    __slots__ = ("conn", "load", "outstanding", "parser", "sent_ns")

    def __init__(self, load: HttpLoad, conn: TcpConnection) -> None:
        self.load = load
        self.conn = conn
        self.parser = httptools.HttpResponseParser(self)
        self.outstanding = 0
        self.sent_ns = 0

    def on_message_complete(self) -> None:
        self.outstanding -= 1
        self.load.answered(self, self.parser.get_status_code())


class HttpLoad(Handler):
    """One process's share of the load: ``config.conns`` connections on one loop."""

    def __init__(self, config: HttpLoadConfig) -> None:
        self.config = config
        # thousands of ready connections per iteration are normal here, not a stall
        self.loop = EventLoop(config.poller, name="http-load", slow_iteration=math.inf)
        self.batch = config.request_bytes()
        self.phase = RAMP
        self.clients: list[TcpClient] = []
        self.live: set[TcpConnection] = set()
        self.unsettled = 0
        self.started = 0
        self.connected = 0
        self.outstanding = 0
        self.requests = 0
        self.latency = LatencyHistogram()
        self.errors: collections.Counter[str] = collections.Counter()
        self.window = 0.0
        self._window_start = 0
        self._record = self.latency.record
        self._perf_ns = time.perf_counter_ns

    def run(self, coordinator: _Coordinator) -> HttpLoadResult:
        try:
            self._start_batch()
            if self.unsettled:
                self.loop.run()
            if self.config.warmup > 0 and self.live:
                self._traffic(WARMUP, self.config.warmup)
            self.phase = READY
            coordinator.ready()
            ticker = self.loop.call_every(
                PROGRESS_INTERVAL, lambda: coordinator.progress(self.requests)
            )
            self.requests = 0
            self._window_start = self._perf_ns()
            if self.live:
                self._traffic(MEASURE, self.config.duration)
            ticker.cancel()
            result = HttpLoadResult(
                conns=self.config.conns,
                connected=self.connected,
                requests=self.requests,
                duration=self.window,
                latency=self.latency,
                errors=dict(self.errors),
            )
            coordinator.finished(result)
            return result
        finally:
            self._close_all()

    # -- ramp-up -------------------------------------------------------------------------

    def _start_batch(self) -> None:
        batch = min(self.config.ramp_batch, self.config.conns - self.started)
        self.unsettled = batch
        for _ in range(batch):
            client = TcpClient(
                self.loop,
                (self.config.host, self.config.port),
                self,
                retry=False,
                timeout=self.config.connect_timeout,
                on_connect_failed=self._connect_failed,
            )
            self.clients.append(client)
            self.started += 1
            client.connect()

    def _settled(self) -> None:
        self.unsettled -= 1
        if self.unsettled == 0 and self.phase == RAMP:
            if self.started < self.config.conns:
                self._start_batch()
            else:
                self.loop.stop()

    def _connect_failed(self, exc: OSError) -> None:
        self.errors[_errno_kind("connect", exc)] += 1
        self._settled()

    # -- traffic -------------------------------------------------------------------------

    def _traffic(self, phase: int, seconds: float) -> None:
        self.phase = phase
        for conn in list(self.live):
            self._send_batch(conn.context)
        self.loop.flush()
        timer = self.loop.call_later(seconds, self._end_traffic)
        self.loop.run()
        timer.cancel()

    def _send_batch(self, exchange: _Exchange) -> None:
        exchange.outstanding = self.config.pipeline
        self.outstanding += self.config.pipeline
        exchange.sent_ns = self._perf_ns()
        exchange.conn.send(self.batch)

    def _end_traffic(self) -> None:
        if self.phase == MEASURE:
            self.window = (self._perf_ns() - self._window_start) / 1e9
        self.phase = DRAIN if self.phase == MEASURE else READY
        if self.outstanding == 0:
            self.loop.stop()
        else:
            self.loop.call_later(self.config.drain_timeout, self._drain_expired)

    def _drain_expired(self) -> None:
        if self.phase in (DRAIN, READY) and self.outstanding:
            self.errors["unanswered"] += self.outstanding
            for conn in list(self.live):
                conn.force_close()
            self.loop.stop()

    def answered(self, exchange: _Exchange, status: int) -> None:
        self.outstanding -= 1
        phase = self.phase
        if not 200 <= status < 300:
            self.errors[f"status:{status}"] += 1
        elif phase in (MEASURE, DRAIN):
            sent_ns = exchange.sent_ns
            self._record(self._perf_ns() - sent_ns)
            if sent_ns >= self._window_start:
                self.requests += 1
        if exchange.outstanding:
            return
        if phase in (MEASURE, WARMUP):
            self._send_batch(exchange)
        elif not self.outstanding:
            self.loop.stop()

    def _close_all(self) -> None:
        self.phase = CLOSING
        for client in self.clients:
            client.connector.stop()
        for conn in list(self.live):
            conn.force_close()
        self.loop.close()

    # -- Handler callbacks ---------------------------------------------------------------

    def on_connection(self, conn: TcpConnection) -> None:
        conn.context = _Exchange(self, conn)
        self.live.add(conn)
        self.connected += 1
        if self.phase == RAMP:
            self._settled()

    def on_message(self, conn: TcpConnection, buffer: Buffer) -> None:
        exchange: _Exchange = conn.context
        try:
            with buffer.peek() as data:
                exchange.parser.feed_data(data)
        except httptools.HttpParserError:
            self.errors["parse"] += 1
            buffer.retrieve_all()
            self._forget(conn)
            conn.force_close()
            return
        buffer.retrieve_all()

    def _forget(self, conn: TcpConnection) -> None:
        self.live.discard(conn)
        exchange: _Exchange | None = conn.context
        conn.context = None
        if exchange is not None:
            self.outstanding -= exchange.outstanding
        if not self.live and self.phase in (WARMUP, MEASURE):
            self._end_traffic()
        elif not self.outstanding and self.phase in (DRAIN, READY):
            self.loop.stop()

    def on_close(self, conn: TcpConnection) -> None:
        if conn.context is None or self.phase == CLOSING:
            return
        self.errors[_errno_kind("closed", conn.error)] += 1
        self._forget(conn)


# -- coordination: one process, or several side by side ------------------------------------


class _Coordinator:
    """Where a load process reports; the local one drives the progress bar and callbacks."""

    def __init__(
        self,
        on_start: Callable[[], object] | None = None,
        on_end: Callable[[], object] | None = None,
        view: ProgressView | None = None,
    ) -> None:
        self.on_start = on_start
        self.on_end = on_end
        self.view = view

    def ready(self) -> None:
        if self.on_start is not None:
            self.on_start()
        if self.view is not None:
            self.view.begin()

    def progress(self, requests: int) -> None:
        if self.view is not None:
            self.view.update(requests)

    def finished(self, result: HttpLoadResult) -> None:
        if self.view is not None:
            self.view.end()
        if self.on_end is not None:
            self.on_end()


class _PipeCoordinator(_Coordinator):
    """A child's side: report over the pipe and wait for the parent's word."""

    def __init__(self, pipe: multiprocessing.connection.Connection) -> None:
        super().__init__()
        self.pipe = pipe

    def ready(self) -> None:
        self.pipe.send(("ready", None))
        self.pipe.recv()  # "go"

    def progress(self, requests: int) -> None:
        self.pipe.send(("progress", requests))

    def finished(self, result: HttpLoadResult) -> None:
        self.pipe.send(("done", result))
        self.pipe.recv()  # "close"


class ProgressView:
    """A rich progress bar over the measured window (refreshed by the load, no thread)."""

    def __init__(self, duration: float, label: str = "http load") -> None:
        self.duration = duration
        self.bar = Progress(
            TextColumn(f"[bold]{label}"),
            BarColumn(),
            TextColumn("{task.fields[requests]:>12,} req  {task.fields[rate]:>10,.0f} req/s"),
            TimeRemainingColumn(),
            auto_refresh=False,
            transient=True,
        )
        self.task = self.bar.add_task("load", total=duration, requests=0, rate=0.0)
        self.start = 0.0

    def begin(self) -> None:
        self.start = time.monotonic()
        self.bar.start()

    def update(self, requests: int) -> None:
        elapsed = time.monotonic() - self.start
        rate = requests / elapsed if elapsed > 0 else 0.0
        self.bar.update(
            self.task, completed=min(elapsed, self.duration), requests=requests, rate=rate
        )
        self.bar.refresh()

    def end(self) -> None:
        self.bar.stop()


def _child_main(config: HttpLoadConfig, pipe: multiprocessing.connection.Connection) -> None:
    raise_nofile_limit()
    try:
        HttpLoad(config).run(_PipeCoordinator(pipe))
    except BaseException as exc:
        pipe.send(("failed", repr(exc)))
        raise


def _receive(pipe: multiprocessing.connection.Connection) -> tuple[str, Any]:
    try:
        kind, value = pipe.recv()
    except EOFError:
        raise RuntimeError("a load process exited early") from None
    if kind == "failed":
        raise RuntimeError(f"a load process failed: {value}")
    return kind, value


def _run_processes(config: HttpLoadConfig, local: _Coordinator) -> HttpLoadResult:
    ctx = multiprocessing.get_context("spawn")
    children = []
    shares = [config.conns // config.procs] * config.procs
    for i in range(config.conns % config.procs):
        shares[i] += 1
    for share in shares:
        parent_end, child_end = ctx.Pipe()
        proc = ctx.Process(
            target=_child_main,
            args=(replace(config, conns=share, procs=1), child_end),
            daemon=True,
        )
        proc.start()
        child_end.close()
        children.append((proc, parent_end))
    pipes = [pipe for _, pipe in children]
    budget = config.warmup + config.duration + config.drain_timeout + config.connect_timeout
    deadline = time.monotonic() + 2 * budget + PROCESS_SLACK
    try:
        for pipe in pipes:
            while _receive(pipe)[0] != "ready":
                if time.monotonic() > deadline:
                    raise TimeoutError("load processes not ready in time")
        local.ready()
        for pipe in pipes:
            pipe.send("go")
        counts = [0] * len(pipes)
        results: dict[int, HttpLoadResult] = {}
        while len(results) < len(pipes):
            if time.monotonic() > deadline:
                raise TimeoutError("a load process did not finish in time")
            for ready in multiprocessing.connection.wait(pipes, timeout=PROGRESS_INTERVAL):
                assert isinstance(ready, multiprocessing.connection.Connection)
                i = pipes.index(ready)
                kind, value = _receive(ready)
                if kind == "progress":
                    counts[i] = value
                elif kind == "done":
                    results[i] = value
            local.progress(sum(counts))
        merged = HttpLoadResult.merge([results[i] for i in range(len(pipes))])
        local.finished(merged)
        for pipe in pipes:
            pipe.send("close")
        return merged
    finally:
        for _, pipe in children:
            pipe.close()
        for proc, _ in children:
            proc.join(PROCESS_SLACK)
            if proc.is_alive():
                proc.kill()
                proc.join()


def run_http_load(
    config: HttpLoadConfig,
    *,
    on_start: Callable[[], object] | None = None,
    on_end: Callable[[], object] | None = None,
    progress: bool = False,
) -> HttpLoadResult:
    """Run the load of ``config``; ``on_start``/``on_end`` bracket the measured window."""
    view = ProgressView(config.duration) if progress else None
    local = _Coordinator(on_start, on_end, view)
    try:
        if config.procs > 1:
            return _run_processes(config, local)
        raise_nofile_limit()
        return HttpLoad(config).run(local)
    finally:
        if view is not None:
            view.end()


# -- wrk, when it is installed ---------------------------------------------------------------

#: wrk script that writes ``depth`` requests per write (wrk counts each response).
WRK_PIPELINE_SCRIPT = """
init = function(args)
  local depth = tonumber(args[1]) or 1
  local r = {}
  for i = 1, depth do r[i] = wrk.format(nil, "%s") end
  req = table.concat(r)
end
request = function() return req end
"""

_WRK_UNITS = {"us": 1.0, "ms": 1e3, "s": 1e6, "m": 60e6}


@dataclass
class WrkResult:
    """What wrk reported for one run."""

    requests: int
    duration: float
    p50_us: float
    p99_us: float
    errors: dict[str, int] = field(default_factory=dict)


def wrk_path() -> str | None:
    """The wrk executable, or None when it is not installed."""
    return shutil.which("wrk")


def _wrk_latency_us(text: str) -> float:
    match = re.fullmatch(r"([0-9.]+)(us|ms|s|m)", text)
    if match is None:
        raise ValueError(f"unrecognised wrk latency {text!r}")
    return float(match.group(1)) * _WRK_UNITS[match.group(2)]


def parse_wrk_output(output: str) -> WrkResult:
    """Requests, duration, p50/p99 and errors from ``wrk --latency`` output."""
    total = re.search(r"(\d+) requests in ([0-9.]+)(us|ms|s|m)", output)
    if total is None:
        raise ValueError(f"no request count in wrk output:\n{output}")
    requests = int(total.group(1))
    duration = _wrk_latency_us(total.group(2) + total.group(3)) / 1e6
    percentiles = dict(re.findall(r"^\s+(50|99)%\s+([0-9.]+(?:us|ms|s|m))\s*$", output, re.M))
    errors: dict[str, int] = {}
    socket_errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    if socket_errors is not None:
        for kind, count in zip(
            ("connect", "read", "write", "timeout"), socket_errors.groups(), strict=True
        ):
            if int(count):
                errors[f"wrk:{kind}"] = int(count)
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if non_2xx is not None:
        errors["status:non-2xx"] = int(non_2xx.group(1))
    return WrkResult(
        requests=requests,
        duration=duration,
        p50_us=_percentile(percentiles, "50"),
        p99_us=_percentile(percentiles, "99"),
        errors=errors,
    )


def _percentile(percentiles: dict[str, str], name: str) -> float:
    """A wrk percentile in µs; NaN when missing or 0 (wrk's histogram reports 0 for the
    upper percentiles when pipelining, which is not a latency)."""
    value = _wrk_latency_us(percentiles[name]) if name in percentiles else 0.0
    return value if value > 0 else float("nan")


def run_wrk(
    config: HttpLoadConfig,
    *,
    core: int | None = None,
    on_start: Callable[[], object] | None = None,
    on_end: Callable[[], object] | None = None,
) -> WrkResult:
    """Drive the server with wrk (one thread, pinned to ``core``): a warm-up run, then the
    measured run bracketed by ``on_start``/``on_end``."""
    wrk = wrk_path()
    if wrk is None:
        raise RuntimeError("wrk is not installed")
    url = f"http://{config.host}:{config.port}{config.path}"
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(WRK_PIPELINE_SCRIPT % config.path)
    try:

        def command(seconds: float) -> list[str]:
            argv = [wrk, "-t1", f"-c{config.conns}", f"-d{max(1, round(seconds))}s", "--latency"]
            argv += ["--timeout", "10s", "-s", script.name, url, "--", str(config.pipeline)]
            return ["taskset", "-c", str(core), *argv] if core is not None else argv

        limit = PROCESS_SLACK + config.warmup + config.duration
        if config.warmup > 0:
            subprocess.run(command(config.warmup), capture_output=True, timeout=limit, check=True)
        if on_start is not None:
            on_start()
        done = subprocess.run(
            command(config.duration), capture_output=True, text=True, timeout=limit, check=True
        )
        if on_end is not None:
            on_end()
    finally:
        os.unlink(script.name)
    return parse_wrk_output(done.stdout)
