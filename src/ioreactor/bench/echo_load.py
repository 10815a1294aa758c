"""The echo load generator (``ioreactor echo-client``), built on ioreactor's own loop.

Each connection plays ping-pong: it sends a message of ``size`` random bytes (``pipeline``
of them in flight), checks every byte of the echo against what it sent, records the
round-trip latency and sends the next one. Consecutive messages on a connection differ,
so a lost, repeated, reordered or corrupted byte is an ``integrity`` error (the
connection is then closed: its stream is out of step).

Phases of one run (in each process)::

    ramp-up   connect in batches of ``ramp_batch`` (the listen backlog is not overrun);
              failures are counted as ``connect:ERRNO`` errors, not fatal
    warm-up   ``warmup`` seconds of traffic, not measured, then drained
    ready     (barrier: every process is connected and warm) -> ``on_start()``
    measure   ``duration`` seconds; messages *sent* in this window are counted
    drain     stop sending; wait up to ``drain_timeout`` for the replies in flight
    done      -> ``on_end()``; then the connections close

``on_start``/``on_end`` bracket exactly the measured traffic, which is where a benchmark
samples the server's CPU time. ``procs > 1`` splits the connections over that many
processes (one process may hold at most RLIMIT_NOFILE fds: the C20K case needs two) and
merges their results.
"""

from __future__ import annotations

import collections
import errno
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Protocol

from ioreactor.bench.latency import LatencyHistogram
from ioreactor.loop.event_loop import EventLoop
from ioreactor.net.buffer import Buffer
from ioreactor.net.client import TcpClient
from ioreactor.net.connection import TcpConnection
from ioreactor.net.handler import Handler
from ioreactor.net.sockopt import raise_nofile_limit

if TYPE_CHECKING:  # imported where used: `ioreactor echo` loads every CLI module
    import multiprocessing.connection

    from rich.progress import Progress

    from ioreactor.loop.timers import TimerHandle

#: Connections started at once during ramp-up (each batch must settle before the next).
RAMP_BATCH = 256
#: Seconds one connect may take before it counts as a ``connect:ETIMEDOUT`` error.
CONNECT_TIMEOUT = 10.0
#: Seconds to wait for the replies in flight when the window closes.
DRAIN_TIMEOUT = 5.0
#: How often the progress bar (and the parent process) hears from a load process.
PROGRESS_INTERVAL = 0.25
#: Distinct random payloads, together at most PAYLOAD_POOL_BYTES.
DISTINCT_PAYLOADS = 16
PAYLOAD_POOL_BYTES = 16 * 1024 * 1024
#: Seconds the parent waits on a load process beyond the run's own length.
PROCESS_SLACK = 60.0

RAMP, WARMUP, READY, MEASURE, DRAIN, CLOSING = range(6)


@dataclass(frozen=True)
class EchoLoadConfig:
    host: str
    port: int
    conns: int = 100
    size: int = 1024
    duration: float = 10.0
    pipeline: int = 1
    procs: int = 1
    warmup: float = 0.0
    poller: str | None = None
    ramp_batch: int = RAMP_BATCH
    connect_timeout: float = CONNECT_TIMEOUT
    drain_timeout: float = DRAIN_TIMEOUT
    seed: int | None = None

    def __post_init__(self) -> None:
        for name in ("conns", "size", "pipeline", "procs", "ramp_batch"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.duration <= 0 or self.warmup < 0:
            raise ValueError("duration must be > 0 and warmup >= 0")
        if self.procs > self.conns:
            raise ValueError(f"procs ({self.procs}) must not exceed conns ({self.conns})")


@dataclass
class EchoLoadResult:
    """What the load saw; ``messages`` were sent in the window and echoed intact."""

    conns: int
    connected: int
    messages: int
    bytes: int
    duration: float
    latency: LatencyHistogram
    errors: dict[str, int] = field(default_factory=dict)
    procs: int = 1

    @property
    def messages_per_s(self) -> float:
        return self.messages / self.duration if self.duration > 0 else 0.0

    def latency_us(self, q: float) -> float:
        return self.latency.percentile(q) / 1000.0

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    @classmethod
    def merge(cls, parts: list[EchoLoadResult]) -> EchoLoadResult:
        """One result for processes that ran side by side over the same window."""
        errors: collections.Counter[str] = collections.Counter()
        for p in parts:
            errors.update(p.errors)
        return cls(
            conns=sum(p.conns for p in parts),
            connected=sum(p.connected for p in parts),
            messages=sum(p.messages for p in parts),
            bytes=sum(p.bytes for p in parts),
            duration=max(p.duration for p in parts),
            latency=LatencyHistogram.merged(p.latency for p in parts),
            errors=dict(errors),
            procs=sum(p.procs for p in parts),
        )

    def summary(self) -> str:
        errors = ", ".join(f"{k} {v}" for k, v in sorted(self.errors.items())) or "none"
        return (
            f"{self.connected:,}/{self.conns:,} connections, {self.messages:,} messages in "
            f"{self.duration:.2f} s = {self.messages_per_s:,.0f} msg/s; latency µs "
            f"p50 {self.latency_us(0.5):,.0f} p99 {self.latency_us(0.99):,.0f} "
            f"p99.9 {self.latency_us(0.999):,.0f} max {self.latency.max / 1000:,.0f}; "
            f"errors: {errors}"
        )


class _Coordinator(Protocol):
    """How a load process meets the others (and the benchmark) between phases."""

    def ready(self) -> None: ...
    def progress(self, messages: int) -> None: ...
    def finished(self, result: EchoLoadResult) -> None: ...


class _ConnState:
    """Per-connection ping-pong state: the messages in flight and how far the head is."""

    __slots__ = ("inflight", "next_payload", "pos")

    def __init__(self, first_payload: int) -> None:
        #: (payload, perf_counter_ns at send) per message in flight, oldest first.
        self.inflight: collections.deque[tuple[bytes, int]] = collections.deque()
        self.next_payload = first_payload
        #: Bytes of the oldest message in flight already received and checked.
        self.pos = 0


def _errno_kind(prefix: str, exc: BaseException | None) -> str:
    if isinstance(exc, OSError) and exc.errno is not None:
        return f"{prefix}:{errno.errorcode.get(exc.errno, str(exc.errno))}"
    return f"{prefix}:{type(exc).__name__}" if exc is not None else f"{prefix}:eof"


class EchoLoad(Handler):
    """One process's share of the load: ``config.conns`` connections on one loop."""

    def __init__(self, config: EchoLoadConfig) -> None:
        self.config = config
        # No slow-iteration warnings: the load's own lag shows in its latency figures.
        self.loop = EventLoop(config.poller, name="echo-load", slow_iteration=math.inf)
        rng = random.Random(config.seed)
        count = max(2, min(DISTINCT_PAYLOADS, PAYLOAD_POOL_BYTES // config.size))
        self.payloads = [rng.randbytes(config.size) for _ in range(count)]
        self.size = config.size
        self.phase = RAMP
        self.clients: list[TcpClient] = []
        self.live: set[TcpConnection] = set()
        self.unsettled = 0  # connects of the current ramp batch not yet resolved
        self.started = 0
        self.connected = 0
        self.outstanding = 0
        self.messages = 0
        self.latency = LatencyHistogram()
        self.errors: collections.Counter[str] = collections.Counter()
        self.window = 0.0
        self._window_start = 0
        self._record = self.latency.record
        self._perf_ns = time.perf_counter_ns
        self._drain_timer: TimerHandle | None = None

    # -- running the phases --------------------------------------------------------------

    def run(self, coordinator: _Coordinator) -> EchoLoadResult:
        try:
            self._ramp_up()
            if self.config.warmup > 0 and self.live:
                self._traffic(WARMUP, self.config.warmup)
            self.phase = READY
            coordinator.ready()
            progress = self.loop.call_every(
                PROGRESS_INTERVAL, lambda: coordinator.progress(self.messages)
            )
            self.messages = 0
            self._window_start = self._perf_ns()
            if self.live:  # else nothing to measure: the result says why (errors)
                self._traffic(MEASURE, self.config.duration)
            progress.cancel()
            result = self._result()
            coordinator.finished(result)
            return result
        finally:
            self._close_all()

    def _ramp_up(self) -> None:
        self._start_batch()
        if self.unsettled:
            self.loop.run()

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

    def _traffic(self, phase: int, seconds: float) -> None:
        """Ping-pong for ``seconds``, then drain the replies in flight."""
        self.phase = phase
        for conn in list(self.live):
            for _ in range(self.config.pipeline):
                self._send_next(conn)
        self.loop.flush()
        timer = self.loop.call_later(seconds, self._end_traffic)
        self.loop.run()
        timer.cancel()
        if self._drain_timer is not None:
            # The drain finished before its deadline: a stale timer must not fire in a
            # later phase and count that phase's replies in flight as lost.
            self._drain_timer.cancel()
            self._drain_timer = None

    def _end_traffic(self) -> None:
        if self.phase == MEASURE:
            self.window = (self._perf_ns() - self._window_start) / 1e9
        self.phase = DRAIN if self.phase == MEASURE else READY
        if self.outstanding == 0:
            self.loop.stop()
        else:
            self._drain_timer = self.loop.call_later(self.config.drain_timeout, self._drain_expired)

    def _drain_expired(self) -> None:
        self._drain_timer = None
        if self.phase in (DRAIN, READY) and self.outstanding:
            self.errors["unanswered"] += self.outstanding
            for conn in list(self.live):  # their streams are out of step now
                conn.force_close()
            self.loop.stop()

    def _result(self) -> EchoLoadResult:
        return EchoLoadResult(
            conns=self.config.conns,
            connected=self.connected,
            messages=self.messages,
            bytes=self.messages * self.size,
            duration=self.window,
            latency=self.latency,
            errors=dict(self.errors),
        )

    def _close_all(self) -> None:
        self.phase = CLOSING
        for client in self.clients:
            client.connector.stop()
        for conn in list(self.live):
            conn.force_close()
        self.loop.close()

    # -- the connections (Handler callbacks) ---------------------------------------------

    def on_connection(self, conn: TcpConnection) -> None:
        conn.context = _ConnState(len(self.live) % len(self.payloads))
        self.live.add(conn)
        self.connected += 1
        if self.phase == RAMP:
            self._settled()

    def _send_next(self, conn: TcpConnection) -> None:
        state: _ConnState = conn.context
        payloads = self.payloads
        payload = payloads[state.next_payload]
        state.next_payload = (state.next_payload + 1) % len(payloads)
        state.inflight.append((payload, self._perf_ns()))
        self.outstanding += 1
        conn.send(payload)

    def on_message(self, conn: TcpConnection, buffer: Buffer) -> None:
        state: _ConnState = conn.context
        size = self.size
        inflight = state.inflight
        while True:
            n = len(buffer)
            if not n:
                return
            if not inflight:
                self._integrity_error(conn, buffer)
                return
            payload, sent_ns = inflight[0]
            pos = state.pos
            take = min(n, size - pos)
            expected = payload if take == size else payload[pos : pos + take]
            if buffer.read(take) != expected:
                self._integrity_error(conn, buffer)
                return
            pos += take
            if pos < size:
                state.pos = pos
                return
            state.pos = 0
            inflight.popleft()
            self.outstanding -= 1
            phase = self.phase
            if phase in (MEASURE, DRAIN):
                self._record(self._perf_ns() - sent_ns)
                if sent_ns >= self._window_start:
                    self.messages += 1
            if phase in (MEASURE, WARMUP):
                self._send_next(conn)
            elif not self.outstanding:
                self.loop.stop()  # drained

    def _integrity_error(self, conn: TcpConnection, buffer: Buffer) -> None:
        """The echo differs from what was sent: count it and drop the connection."""
        self.errors["integrity"] += 1
        buffer.retrieve_all()
        self._forget(conn)
        conn.force_close()

    def _forget(self, conn: TcpConnection) -> None:
        """Take a closing connection out of the load; its messages in flight are lost."""
        self.live.discard(conn)
        state: _ConnState = conn.context
        conn.context = None
        self.outstanding -= len(state.inflight)
        if not self.live and self.phase in (WARMUP, MEASURE):
            self._end_traffic()  # nobody left to measure
        elif not self.outstanding and self.phase in (DRAIN, READY):
            self.loop.stop()

    def on_close(self, conn: TcpConnection) -> None:
        if conn.context is None or self.phase == CLOSING:
            return  # counted already, or closed by us
        self.errors[_errno_kind("closed", conn.error)] += 1
        self._forget(conn)


# -- coordination: one process, or several side by side ------------------------------------


class _ProgressView:
    """A rich progress bar over the measured window (manually refreshed, no thread)."""

    def __init__(self, duration: float, enabled: bool) -> None:
        self.duration = duration
        self.bar: Progress | None = None
        if enabled:
            from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

            self.bar = Progress(
                TextColumn("[bold]echo load"),
                BarColumn(),
                TextColumn("{task.fields[messages]:>12,} msg  {task.fields[rate]:>10,.0f} msg/s"),
                TimeRemainingColumn(),
                auto_refresh=False,
                transient=True,
            )
            self.task = self.bar.add_task("load", total=duration, messages=0, rate=0.0)
        self.start = 0.0

    def begin(self) -> None:
        self.start = time.monotonic()
        if self.bar is not None:
            self.bar.start()

    def update(self, messages: int) -> None:
        if self.bar is not None:
            elapsed = time.monotonic() - self.start
            rate = messages / elapsed if elapsed > 0 else 0.0
            completed = min(elapsed, self.duration)
            self.bar.update(self.task, completed=completed, messages=messages, rate=rate)
            self.bar.refresh()

    def end(self) -> None:
        if self.bar is not None:
            self.bar.stop()


class _LocalCoordinator:
    def __init__(
        self,
        on_start: Callable[[], object] | None,
        on_end: Callable[[], object] | None,
        view: _ProgressView,
    ) -> None:
        self.on_start = on_start
        self.on_end = on_end
        self.view = view

    def ready(self) -> None:
        if self.on_start is not None:
            self.on_start()
        self.view.begin()

    def progress(self, messages: int) -> None:
        self.view.update(messages)

    def finished(self, result: EchoLoadResult) -> None:
        self.view.end()
        if self.on_end is not None:
            self.on_end()


class _PipeCoordinator:
    """A child's side: report over the pipe and wait for the parent's word."""

    def __init__(self, pipe: multiprocessing.connection.Connection) -> None:
        self.pipe = pipe

    def ready(self) -> None:
        self.pipe.send(("ready", None))
        self.pipe.recv()  # "go"

    def progress(self, messages: int) -> None:
        self.pipe.send(("progress", messages))

    def finished(self, result: EchoLoadResult) -> None:
        self.pipe.send(("done", result))
        self.pipe.recv()  # "close"


def _child_main(config: EchoLoadConfig, pipe: multiprocessing.connection.Connection) -> None:
    raise_nofile_limit()
    try:
        EchoLoad(config).run(_PipeCoordinator(pipe))
    except BaseException as exc:
        pipe.send(("failed", repr(exc)))
        raise


def split_conns(conns: int, procs: int) -> list[int]:
    """``conns`` spread over ``procs`` as evenly as possible."""
    return [conns // procs + (1 if i < conns % procs else 0) for i in range(procs)]


def _run_processes(
    config: EchoLoadConfig,
    on_start: Callable[[], object] | None,
    on_end: Callable[[], object] | None,
    view: _ProgressView,
) -> EchoLoadResult:
    import multiprocessing
    import multiprocessing.connection

    ctx = multiprocessing.get_context("spawn")
    children = []
    for i, share in enumerate(split_conns(config.conns, config.procs)):
        seed = None if config.seed is None else config.seed + i
        child_config = replace(config, conns=share, procs=1, seed=seed)
        parent_end, child_end = ctx.Pipe()
        proc = ctx.Process(target=_child_main, args=(child_config, child_end), daemon=True)
        proc.start()
        child_end.close()
        children.append((proc, parent_end))
    pipes = [pipe for _, pipe in children]
    budget = config.warmup + config.duration + config.drain_timeout + config.connect_timeout
    deadline = time.monotonic() + budget * 2 + PROCESS_SLACK
    try:
        _wait_all(pipes, "ready", deadline)
        if on_start is not None:
            on_start()
        view.begin()
        for pipe in pipes:
            pipe.send("go")
        counts = [0] * len(pipes)
        results: dict[int, EchoLoadResult] = {}
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
            view.update(sum(counts))
        view.end()
        if on_end is not None:
            on_end()
        for pipe in pipes:
            pipe.send("close")
        return EchoLoadResult.merge([results[i] for i in range(len(pipes))])
    finally:
        view.end()
        for _, pipe in children:
            pipe.close()  # a child still waiting for a word sees EOF and exits
        for proc, _ in children:
            proc.join(PROCESS_SLACK)
            if proc.is_alive():
                proc.kill()
                proc.join()


def _receive(pipe: multiprocessing.connection.Connection) -> tuple[str, Any]:
    try:
        kind, value = pipe.recv()
    except EOFError:
        raise RuntimeError("a load process exited early") from None
    if kind == "failed":
        raise RuntimeError(f"a load process failed: {value}")
    return kind, value


def _wait_all(
    pipes: list[multiprocessing.connection.Connection], want: str, deadline: float
) -> None:
    import multiprocessing.connection

    pending = set(range(len(pipes)))
    while pending:
        timeout = deadline - time.monotonic()
        if timeout <= 0:
            raise TimeoutError(f"load processes not {want} in time")
        for ready in multiprocessing.connection.wait([pipes[i] for i in pending], timeout):
            assert isinstance(ready, multiprocessing.connection.Connection)
            kind, _ = _receive(ready)
            if kind == want:
                pending.discard(pipes.index(ready))


def run_echo_load(
    config: EchoLoadConfig,
    *,
    on_start: Callable[[], object] | None = None,
    on_end: Callable[[], object] | None = None,
    progress: bool = False,
) -> EchoLoadResult:
    """Run the load described by ``config``; ``on_start``/``on_end`` bracket the window.

    With ``procs == 1`` everything runs in this process (its fd limit is raised to the
    hard limit); otherwise that many child processes share the connections.
    """
    view = _ProgressView(config.duration, progress)
    if config.procs > 1:
        return _run_processes(config, on_start, on_end, view)
    raise_nofile_limit()
    result = EchoLoad(config).run(_LocalCoordinator(on_start, on_end, view))
    view.end()
    return result
