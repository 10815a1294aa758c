"""What the TCP load generators share: phases, results, and processes side by side.

:mod:`ioreactor_tools.bench.echo_load` and :mod:`ioreactor_tools.bench.http_load` subclass
:class:`TcpLoad` and add only their protocol: what a connection sends, how it checks
the answers, and what one counted exchange (a message, a request) is.

Phases of one run (in each process)::

    ramp-up   connect in batches of ``ramp_batch`` (the listen backlog is not overrun);
              failures are counted as ``connect:ERRNO`` errors, not fatal
    warm-up   ``warmup`` seconds of traffic, not measured, then drained
    ready     (barrier: every process is connected and warm) -> ``on_start()``
    measure   ``duration`` seconds; exchanges *sent* in this window are counted
    drain     stop sending; wait up to ``drain_timeout`` for the answers in flight
    done      -> ``on_end()``; then the connections close

``on_start``/``on_end`` bracket exactly the measured traffic, which is where a benchmark
samples the server's CPU time. ``procs > 1`` splits the connections over that many
processes (one process may hold at most RLIMIT_NOFILE fds: the C20K case needs two),
runs the barrier across them and merges their results.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import errno
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Protocol, Self, TypeVar

from ioreactor.loop.event_loop import EventLoop
from ioreactor.net.client import TcpClient
from ioreactor.net.connection import TcpConnection
from ioreactor.net.handlers import Handler
from ioreactor.net.sockopt import raise_nofile_limit
from ioreactor_tools.bench.latency import LatencyHistogram
from ioreactor_tools.children import die_with_parent, receive

if TYPE_CHECKING:  # imported where used: `ioreactor echo` loads every CLI module
    import multiprocessing.connection

    from rich.progress import Progress, TaskID

    from ioreactor.loop.timers import TimerHandle
    from ioreactor.net.buffer import Buffer

#: Connections started at once during ramp-up (each batch must settle before the next).
RAMP_BATCH = 256
#: Seconds one connect may take before it counts as a ``connect:ETIMEDOUT`` error.
CONNECT_TIMEOUT = 10.0
#: Seconds to wait for the answers in flight when the window closes.
DRAIN_TIMEOUT = 5.0
#: How often the progress bar (and the parent process) hears from a load process.
PROGRESS_INTERVAL = 0.25
#: Seconds the parent waits on a load process beyond the run's own length.
PROCESS_SLACK = 60.0
#: fds a load process keeps for itself besides its connections.
FD_RESERVE = 100

RAMP, WARMUP, READY, MEASURE, DRAIN, CLOSING = range(6)


def load_processes(conns: int) -> int:
    """Processes the load needs so that none holds more fds than its limit allows."""
    per_process = max(1, raise_nofile_limit() - FD_RESERVE)
    return max(1, math.ceil(conns / per_process))


@dataclass(frozen=True)
class TcpLoadConfig:
    """Where to connect, how many connections, and how long each phase lasts."""

    host: str
    port: int
    conns: int = 100
    duration: float = 10.0
    warmup: float = 0.0
    pipeline: int = 1
    procs: int = 1
    poller: str | None = None
    ramp_batch: int = RAMP_BATCH
    connect_timeout: float = CONNECT_TIMEOUT
    drain_timeout: float = DRAIN_TIMEOUT

    #: Fields that must be at least 1.
    POSITIVE: ClassVar[tuple[str, ...]] = ("conns", "pipeline", "procs", "ramp_batch")

    def __post_init__(self) -> None:
        for name in self.POSITIVE:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.duration <= 0 or self.warmup < 0:
            raise ValueError("duration must be > 0 and warmup >= 0")
        if self.procs > self.conns:
            raise ValueError(f"procs ({self.procs}) must not exceed conns ({self.conns})")

    def for_process(self, index: int, conns: int) -> Self:
        """The share of load process ``index``: ``conns`` connections in one process."""
        return replace(self, conns=conns, procs=1)


@dataclass(kw_only=True)
class TcpLoadResult:
    """What the load saw; a subclass adds its counts (int fields) and names them."""

    conns: int
    connected: int
    duration: float
    latency: LatencyHistogram
    errors: dict[str, int] = field(default_factory=dict)
    procs: int = 1

    #: The field that counts the exchanges sent in the window and answered correctly
    #: (the summary's word for them), their rate's unit, and the summary's percentiles.
    NOUN: ClassVar[str]
    RATE_UNIT: ClassVar[str]
    QUANTILES: ClassVar[tuple[tuple[str, float], ...]] = (("p50", 0.5), ("p99", 0.99))

    @property
    def count(self) -> int:
        """The exchanges sent in the window and answered correctly (field ``NOUN``)."""
        count: int = getattr(self, self.NOUN)
        return count

    @property
    def rate(self) -> float:
        return self.count / self.duration if self.duration > 0 else 0.0

    def latency_us(self, q: float) -> float:
        return self.latency.percentile_us(q)

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    @classmethod
    def merge(cls, parts: Sequence[Self]) -> Self:
        """One result for processes that ran side by side over the same window: the
        window is the longest, latencies and errors combine, every other field adds up."""
        errors: collections.Counter[str] = collections.Counter()
        for p in parts:
            errors.update(p.errors)
        sums = {
            f.name: sum(getattr(p, f.name) for p in parts)
            for f in dataclasses.fields(cls)
            if f.name not in ("duration", "latency", "errors")
        }
        return cls(
            duration=max(p.duration for p in parts),
            latency=LatencyHistogram.merged(p.latency for p in parts),
            errors=dict(errors),
            **sums,
        )

    def summary(self) -> str:
        errors = ", ".join(f"{k} {v}" for k, v in sorted(self.errors.items())) or "none"
        quantiles = " ".join(f"{label} {self.latency_us(q):,.0f}" for label, q in self.QUANTILES)
        return (
            f"{self.connected:,}/{self.conns:,} connections, {self.count:,} {self.NOUN} in "
            f"{self.duration:.2f} s = {self.rate:,.0f} {self.RATE_UNIT}; latency µs "
            f"{quantiles} max {self.latency.max / 1000:,.0f}; errors: {errors}"
        )


ConfigT = TypeVar("ConfigT", bound=TcpLoadConfig)
ResultT = TypeVar("ResultT", bound=TcpLoadResult)
ResultT_contra = TypeVar("ResultT_contra", bound=TcpLoadResult, contravariant=True)


class Coordinator(Protocol[ResultT_contra]):
    """How a load process meets the others (and the benchmark) between phases."""

    def ready(self) -> None: ...
    def progress(self, count: int) -> None: ...
    def finished(self, result: ResultT_contra) -> None: ...


def errno_kind(prefix: str, exc: BaseException | None) -> str:
    """An error's count key: ``prefix:ERRNO``, ``prefix:ExceptionName`` or ``prefix:eof``."""
    if isinstance(exc, OSError) and exc.errno is not None:
        return f"{prefix}:{errno.errorcode.get(exc.errno, str(exc.errno))}"
    return f"{prefix}:{type(exc).__name__}" if exc is not None else f"{prefix}:eof"


class TcpLoad(Handler, Generic[ConfigT, ResultT]):
    """One process's share of the load: ``config.conns`` connections on one loop.

    A subclass provides the per-connection context, the first sends of a traffic phase
    and the result; its on_message books each answer itself (the hot path, no extra
    call): ``outstanding -= 1``; in MEASURE or DRAIN record the latency and count it in
    ``exchanges`` if it was sent at or after ``_window_start``; in MEASURE or WARMUP send
    the next one, else stop the loop once nothing is outstanding (drained).
    """

    def __init__(self, config: ConfigT, name: str) -> None:
        self.config = config
        # No slow-iteration warnings: thousands of ready connections per iteration are
        # normal here, and the load's own lag shows in its latency figures.
        self.loop = EventLoop(config.poller, name=name, slow_iteration=math.inf)
        self.phase = RAMP
        self.clients: list[TcpClient] = []
        self.live: set[TcpConnection] = set()
        self.unsettled = 0  # connects of the current ramp batch not yet resolved
        self.started = 0
        self.connected = 0
        self.outstanding = 0
        self.exchanges = 0
        self.latency = LatencyHistogram()
        self.errors: collections.Counter[str] = collections.Counter()
        self.window = 0.0
        self._window_start = 0
        self._record = self.latency.record
        self._perf_ns = time.perf_counter_ns
        self._drain_timer: TimerHandle | None = None

    # -- what each protocol provides -----------------------------------------------------

    def _new_context(self, conn: TcpConnection) -> object:
        """The ``conn.context`` of a new connection (before it joins ``live``)."""
        raise NotImplementedError

    def _start_sending(self, conn: TcpConnection) -> None:
        """Put a connection's first exchanges of a traffic phase in flight."""
        raise NotImplementedError

    def _in_flight(self, context: Any) -> int:
        """Exchanges in flight on the connection whose context this is."""
        raise NotImplementedError

    def _result(self) -> ResultT:
        raise NotImplementedError

    # -- running the phases --------------------------------------------------------------

    def run(self, coordinator: Coordinator[ResultT]) -> ResultT:
        try:
            self._start_batch()
            if self.unsettled:
                self.loop.run()
            if self.config.warmup > 0 and self.live:
                self._traffic(WARMUP, self.config.warmup)
            self.phase = READY
            coordinator.ready()
            progress = self.loop.call_every(
                PROGRESS_INTERVAL, lambda: coordinator.progress(self.exchanges)
            )
            self.exchanges = 0
            self._window_start = self._perf_ns()
            if self.live:  # else nothing to measure: the result says why (errors)
                self._traffic(MEASURE, self.config.duration)
            progress.cancel()
            result = self._result()
            coordinator.finished(result)
            return result
        finally:
            self._close_all()

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
        self.errors[errno_kind("connect", exc)] += 1
        self._settled()

    def _traffic(self, phase: int, seconds: float) -> None:
        """Traffic for ``seconds``, then drain the answers in flight."""
        self.phase = phase
        for conn in list(self.live):
            self._start_sending(conn)
        self.loop.flush()
        timer = self.loop.call_later(seconds, self._end_traffic)
        self.loop.run()
        timer.cancel()
        if self._drain_timer is not None:
            # The drain finished before its deadline: a stale timer must not fire in a
            # later phase and count that phase's answers in flight as lost.
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

    def _close_all(self) -> None:
        self.phase = CLOSING
        for client in self.clients:
            client.connector.stop()
        for conn in list(self.live):
            conn.force_close()
        self.loop.close()

    # -- the connections (Handler callbacks) ---------------------------------------------

    def on_connection(self, conn: TcpConnection) -> None:
        conn.context = self._new_context(conn)
        self.live.add(conn)
        self.connected += 1
        if self.phase == RAMP:
            self._settled()

    def _drop(self, conn: TcpConnection, buffer: Buffer, kind: str) -> None:
        """A wrong answer: count it as ``kind`` and drop the connection (out of step)."""
        self.errors[kind] += 1
        buffer.retrieve_all()
        self._forget(conn)
        conn.force_close()

    def _forget(self, conn: TcpConnection) -> None:
        """Take a closing connection out of the load; its exchanges in flight are lost."""
        self.live.discard(conn)
        context = conn.context
        conn.context = None
        if context is not None:
            self.outstanding -= self._in_flight(context)
        if not self.live and self.phase in (WARMUP, MEASURE):
            self._end_traffic()  # nobody left to measure
        elif not self.outstanding and self.phase in (DRAIN, READY):
            self.loop.stop()

    def on_close(self, conn: TcpConnection) -> None:
        if conn.context is None or self.phase == CLOSING:
            return  # counted already, or closed by us
        self.errors[errno_kind("closed", conn.error)] += 1
        self._forget(conn)


# -- coordination: one process, or several side by side ------------------------------------


class ProgressView:
    """A rich progress bar over the measured window (refreshed by the load, no thread)."""

    def __init__(self, duration: float, label: str, unit: str) -> None:
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        self.duration = duration
        self.bar: Progress = Progress(
            TextColumn(f"[bold]{label}"),
            BarColumn(),
            TextColumn(
                f"{{task.fields[count]:>12,}} {unit}  {{task.fields[rate]:>10,.0f}} {unit}/s"
            ),
            TimeRemainingColumn(),
            auto_refresh=False,
            transient=True,
        )
        self.task: TaskID = self.bar.add_task("load", total=duration, count=0, rate=0.0)
        self.start = 0.0

    def begin(self) -> None:
        self.start = time.monotonic()
        self.bar.start()

    def update(self, count: int) -> None:
        elapsed = time.monotonic() - self.start
        rate = count / elapsed if elapsed > 0 else 0.0
        self.bar.update(self.task, completed=min(elapsed, self.duration), count=count, rate=rate)
        self.bar.refresh()

    def end(self) -> None:
        self.bar.stop()


class LocalCoordinator:
    """The benchmark's side: its callbacks bracket the window; the view shows progress."""

    def __init__(
        self,
        on_start: Callable[[], object] | None,
        on_end: Callable[[], object] | None,
        view: ProgressView | None,
    ) -> None:
        self.on_start = on_start
        self.on_end = on_end
        self.view = view

    def ready(self) -> None:
        if self.on_start is not None:
            self.on_start()
        if self.view is not None:
            self.view.begin()

    def progress(self, count: int) -> None:
        if self.view is not None:
            self.view.update(count)

    def finished(self, result: TcpLoadResult) -> None:
        if self.view is not None:
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

    def progress(self, count: int) -> None:
        try:
            self.pipe.send(("progress", count))
        except OSError:
            # The parent closed its end (it was stopped): nobody waits for this load.
            # SystemExit, not an error: it leaves the loop (which logs and swallows
            # errors of its callbacks) and ends this process.
            raise SystemExit(1) from None

    def finished(self, result: TcpLoadResult) -> None:
        self.pipe.send(("done", result))
        self.pipe.recv()  # "close"


LoadFactory = Callable[[ConfigT], TcpLoad[ConfigT, ResultT]]


def run_load(
    load: LoadFactory[ConfigT, ResultT],
    config: ConfigT,
    *,
    on_start: Callable[[], object] | None = None,
    on_end: Callable[[], object] | None = None,
    view: ProgressView | None = None,
) -> ResultT:
    """Run ``load(config)``; ``on_start``/``on_end`` bracket the measured window.

    With ``procs == 1`` everything runs in this process (its fd limit is raised to the
    hard limit); otherwise that many child processes share the connections, and ``load``
    must be picklable (a class at module level).
    """
    local = LocalCoordinator(on_start, on_end, view)
    try:
        if config.procs > 1:
            return _run_processes(load, config, local)
        raise_nofile_limit()
        return load(config).run(local)
    finally:
        if view is not None:
            view.end()


def split_conns(conns: int, procs: int) -> list[int]:
    """``conns`` spread over ``procs`` as evenly as possible."""
    return [conns // procs + (1 if i < conns % procs else 0) for i in range(procs)]


def _child_main(
    load: LoadFactory[ConfigT, ResultT],
    config: ConfigT,
    pipe: multiprocessing.connection.Connection,
) -> None:
    die_with_parent()
    raise_nofile_limit()
    try:
        load(config).run(_PipeCoordinator(pipe))
    except BaseException as exc:
        with contextlib.suppress(OSError):  # the parent may be gone
            pipe.send(("failed", repr(exc)))
        raise


def _run_processes(
    load: LoadFactory[ConfigT, ResultT], config: ConfigT, local: LocalCoordinator
) -> ResultT:
    import multiprocessing
    import multiprocessing.connection

    ctx = multiprocessing.get_context("spawn")
    children = []
    for i, share in enumerate(split_conns(config.conns, config.procs)):
        parent_end, child_end = ctx.Pipe()
        proc = ctx.Process(
            target=_child_main, args=(load, config.for_process(i, share), child_end), daemon=True
        )
        proc.start()
        child_end.close()
        children.append((proc, parent_end))
    pipes = [pipe for _, pipe in children]
    budget = config.warmup + config.duration + config.drain_timeout + config.connect_timeout
    deadline = time.monotonic() + budget * 2 + PROCESS_SLACK
    try:
        _wait_all(pipes, "ready", deadline)
        local.ready()
        for pipe in pipes:
            pipe.send("go")
        counts = [0] * len(pipes)
        results: dict[int, ResultT] = {}
        while len(results) < len(pipes):
            if time.monotonic() > deadline:
                raise TimeoutError("a load process did not finish in time")
            for ready in multiprocessing.connection.wait(pipes, timeout=PROGRESS_INTERVAL):
                assert isinstance(ready, multiprocessing.connection.Connection)
                i = pipes.index(ready)
                kind, value = receive(ready, "a load process")
                if kind == "progress":
                    counts[i] = value
                elif kind == "done":
                    results[i] = value
            local.progress(sum(counts))
        parts = [results[i] for i in range(len(pipes))]
        merged = type(parts[0]).merge(parts)
        local.finished(merged)
        for pipe in pipes:
            pipe.send("close")
        return merged
    finally:
        for _, pipe in children:
            pipe.close()  # a child still waiting for a word sees EOF and exits
        for proc, _ in children:
            proc.join(PROCESS_SLACK)
            if proc.is_alive():
                proc.kill()
                proc.join()


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
            kind, _ = receive(ready, "a load process")
            if kind == want:
                pending.discard(pipes.index(ready))
