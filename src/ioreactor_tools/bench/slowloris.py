"""Slowloris against ``ioreactor serve``: does normal traffic survive, and does every
slow connection end at the header timeout?

A slowloris client opens a connection and sends a request head one byte every few
seconds, never finishing it, to hold a server slot for as long as the server lets it.
:class:`SlowClients` keeps ``count`` such connections open on one loop (one process):
it trickles a never-ending head (:data:`HEAD`), records how each connection ended
(``408`` answered, or closed without a word) and how long it lived, and opens a new one
in its place, so the attack keeps its strength for the whole run.

:func:`run_slowloris` is the benchmark: the server runs pinned to the server core;
normal keep-alive load (wrk when installed, else ioreactor's own generator) runs on the
load core once alone and once while the attack process (also on the load core) holds
its connections; the report gives the normal load's throughput and server CPU per
request in both runs, their ratio, and the fate of every slow connection.
"""

from __future__ import annotations

import dataclasses
import math
import multiprocessing
import multiprocessing.connection
import sys
from dataclasses import dataclass, field
from typing import Any

from ioreactor.loop.event_loop import EventLoop
from ioreactor.loop.poller import READ
from ioreactor.net.buffer import Buffer
from ioreactor.net.client import TcpClient
from ioreactor.net.connection import TcpConnection
from ioreactor.net.handlers import Handler
from ioreactor.net.sockopt import raise_nofile_limit
from ioreactor.testing import free_port
from ioreactor_tools.bench.pinning import ServerProcess, core_plan, pin_current_process
from ioreactor_tools.children import die_with_parent, receive

#: The head a slow connection trickles: a real request line, then a field that never ends.
HEAD = b"GET /slowloris HTTP/1.1\r\nHost: slowloris\r\nX-Trickle: " + b"a" * 65536
#: Bytes before the request target, which llhttp consumes without reporting a request yet.
PREFIX = len(b"GET ")
#: Connects in flight at once while the attack ramps up.
RAMP_BATCH = 256
#: Trickle schedule: each connection sends in one of this many slots per interval, so the
#: bytes of thousands of connections are spread evenly over time.
SLOTS = 20
#: Extra time allowed beyond the header timeout: the sweep period, and the lag of both
#: loops (the server's in closing, the attacker's in noticing it).
LIFETIME_SLACK = 5.0
#: A close this much sooner than the header timeout is early (the two ends' clocks start
#: a moment apart).
EARLY_MARGIN = 0.9
#: The normal load's throughput under attack, as a fraction of the unattacked, at least.
THROUGHPUT_TARGET = 0.8


@dataclass
class SlowTally:
    """How the slow connections of one attack fared (picklable: crosses processes)."""

    opened: int = 0
    bytes_sent: int = 0
    closed_408: int = 0
    closed_silent: int = 0
    #: Closed with another answer (``status:NNN``) or a connect failure (``connect:ERRNO``).
    other: dict[str, int] = field(default_factory=dict)
    #: Closed by the server sooner than the header timeout after the connection's start.
    early: int = 0
    #: Closed (or still open when the attack stopped) more than the header timeout plus
    #: ``LIFETIME_SLACK`` after the later of the connection's start and its target.
    overdue: int = 0
    #: Seconds from connect to close, per closed connection.
    lifetimes: list[float] = field(default_factory=list)
    #: Seconds from the first byte of the request target to the close: the time the
    #: server's header timeout governs (llhttp starts a request at its target; the
    #: bytes of the method before it only keep an idle connection open).
    head_times: list[float] = field(default_factory=list)

    @property
    def closed(self) -> int:
        return (
            self.closed_408
            + self.closed_silent
            + sum(n for kind, n in self.other.items() if kind.startswith("status:"))
        )

    def lifetime(self, q: float) -> float:
        return _quantile(self.lifetimes, q)

    def head_time(self, q: float) -> float:
        return _quantile(self.head_times, q)

    def merge(self, other: SlowTally) -> None:
        self.opened += other.opened
        self.bytes_sent += other.bytes_sent
        self.closed_408 += other.closed_408
        self.closed_silent += other.closed_silent
        self.early += other.early
        self.overdue += other.overdue
        self.lifetimes.extend(other.lifetimes)
        self.head_times.extend(other.head_times)
        for kind, n in other.other.items():
            self.other[kind] = self.other.get(kind, 0) + n


def _quantile(values: list[float], q: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class _Slow:
    """One slow connection's progress."""

    __slots__ = ("connected_at", "sent", "slot", "status", "target_at")

    def __init__(self, slot: int, now: float) -> None:
        self.slot = slot
        self.connected_at = now
        self.sent = 0
        #: When the first byte of the request target went out (None: not yet).
        self.target_at: float | None = None
        self.status: bytes | None = None

    def latest_start(self) -> float:
        """The latest moment the server's header deadline may count from: the request
        target (llhttp starts a request there; the server may restart the clock), else
        the connection's start. The earliest is always the connection's start."""
        return self.target_at if self.target_at is not None else self.connected_at


class SlowClients(Handler):
    """Keeps ``count`` slowloris connections to ``address`` open on ``loop``.

    Each sends one byte of :data:`HEAD` every ``interval`` seconds; when the server closes
    one, another takes its place until :meth:`stop` is called. The server must close
    each one between ``header_timeout`` after the connection's start (sooner is
    ``early``) and ``header_timeout + LIFETIME_SLACK`` after :meth:`_Slow.latest_start`
    (later is ``overdue``): at most twice the header timeout from the first byte.
    """

    def __init__(
        self,
        loop: EventLoop,
        address: tuple[str, int],
        count: int,
        *,
        interval: float,
        header_timeout: float,
        tally: SlowTally | None = None,
        ramp_batch: int = RAMP_BATCH,
    ) -> None:
        self.loop = loop
        self.address = address
        self.count = count
        self.interval = interval
        self.header_timeout = header_timeout
        self.tally = tally if tally is not None else SlowTally()
        self.ramp_batch = ramp_batch
        self.slots: list[set[TcpConnection]] = [set() for _ in range(SLOTS)]
        self.connecting = 0
        self.running = False
        self._next_slot = 0
        self._tick = 0
        self._timer = loop.call_every(interval / SLOTS, self._trickle)
        self._clients: set[TcpClient] = set()

    @property
    def live(self) -> int:
        return sum(len(s) for s in self.slots)

    def start(self) -> None:
        """Open connections until ``count`` are up or connecting (loop thread)."""
        self.running = True
        self._top_up()

    def _top_up(self) -> None:
        while self.running and self.live + self.connecting < self.count:
            if self.connecting >= self.ramp_batch:
                return
            self.connecting += 1
            client = TcpClient(
                self.loop,
                self.address,
                self,
                retry=False,
                on_connect_failed=self._connect_failed,
            )
            self._clients.add(client)
            client.connect()

    def _connect_failed(self, exc: OSError) -> None:
        self.connecting -= 1
        kind = f"connect:{type(exc).__name__}"
        self.tally.other[kind] = self.tally.other.get(kind, 0) + 1
        self.loop.call_later(0.1, self._top_up)

    def stop(self) -> None:
        """Open no more connections; the open ones keep trickling until closed."""
        self.running = False

    def close(self) -> None:
        """Count the connections overdue, and close them all."""
        now = self.loop.time()
        self.running = False
        self._timer.cancel()
        for slot in self.slots:
            for conn in list(slot):
                state: _Slow = conn.context
                if now - state.latest_start() > self.header_timeout + LIFETIME_SLACK:
                    self.tally.overdue += 1
                conn.context = None
                conn.force_close()
            slot.clear()
        for client in self._clients:
            client.stop()

    # -- the trickle ---------------------------------------------------------------------

    def _trickle(self) -> None:
        slot = self.slots[self._tick % SLOTS]
        self._tick += 1
        if not slot:
            return
        now = self.loop.time()
        for conn in slot:
            state: _Slow = conn.context
            i = state.sent % len(HEAD)
            conn.send(HEAD[i : i + 1])
            state.sent += 1
            if i == PREFIX:
                state.target_at = now
        self.tally.bytes_sent += len(slot)

    # -- Handler callbacks ---------------------------------------------------------------

    def on_connection(self, conn: TcpConnection) -> None:
        self.connecting -= 1
        self.tally.opened += 1
        slot = self._next_slot
        self._next_slot = (slot + 1) % SLOTS
        conn.context = _Slow(slot, self.loop.time())
        self.slots[slot].add(conn)
        self._top_up()

    def on_message(self, conn: TcpConnection, buffer: Buffer) -> None:
        state: _Slow | None = conn.context
        if state is not None and state.status is None:
            line = bytes(buffer.peek(min(len(buffer), 16)))
            parts = line.split(b" ", 2)
            state.status = parts[1] if len(parts) > 1 else b"?"
        buffer.retrieve_all()

    def on_close(self, conn: TcpConnection) -> None:
        state: _Slow | None = conn.context
        if state is None:
            return  # closed by close(): counted there
        self.slots[state.slot].discard(conn)
        tally = self.tally
        now = self.loop.time()
        tally.lifetimes.append(now - state.connected_at)
        if state.target_at is not None:
            tally.head_times.append(now - state.target_at)

        if state.status is None:
            tally.closed_silent += 1
        elif state.status == b"408":
            tally.closed_408 += 1
        else:
            kind = f"status:{state.status.decode('latin-1')}"
            tally.other[kind] = tally.other.get(kind, 0) + 1
        if now - state.connected_at < self.header_timeout * EARLY_MARGIN:
            tally.early += 1
        elif now - state.latest_start() > self.header_timeout + LIFETIME_SLACK:
            tally.overdue += 1
        if self.running:
            self._top_up()


# -- the attack as a process ------------------------------------------------------------------


@dataclass(frozen=True)
class AttackConfig:
    host: str
    port: int
    slow: int
    interval: float
    header_timeout: float
    poller: str | None = None

    @property
    def drain_time(self) -> float:
        """How long the last slow connections may take to be closed after the attack
        stops: the bytes before the target, then the header timeout, and the slack."""
        return (PREFIX + 1) * self.interval + self.header_timeout + LIFETIME_SLACK


def _attack_main(config: AttackConfig, pipe: multiprocessing.connection.Connection) -> None:
    """Child process: ramp up, say ``ready``, attack until ``stop``, then report."""
    raise_nofile_limit()
    loop = EventLoop(config.poller, name="slowloris", slow_iteration=math.inf)
    attack = SlowClients(
        loop,
        (config.host, config.port),
        config.slow,
        interval=config.interval,
        header_timeout=config.header_timeout,
    )
    phase = ["ramp"]

    def check_ramp() -> None:
        if phase[0] == "ramp" and attack.live >= config.slow:
            phase[0] = "attack"
            pipe.send(("ready", attack.live))

    def finish() -> None:
        if phase[0] != "done":
            phase[0] = "done"
            attack.close()
            loop.stop()

    def drained() -> None:
        if attack.live == 0:
            finish()

    def on_pipe(events: int) -> None:
        message = pipe.recv()
        loop.unwatch(pipe.fileno())
        if message == "stop":
            attack.stop()  # the open ones trickle on until the server closes them
            loop.call_every(0.1, drained)
            loop.call_later(config.drain_time, finish)
        else:  # "close": the caller does not measure the server's closing of them
            finish()

    loop.watch(pipe.fileno(), READ, on_pipe)
    loop.call_every(0.1, check_ramp)
    loop.call_soon(attack.start)
    try:
        loop.run()
        pipe.send(("done", attack.tally))
    except BaseException as exc:
        pipe.send(("failed", repr(exc)))
        raise
    finally:
        loop.close()


class Attack:
    """The slowloris process: ``with Attack(config, core) as attack: ... attack.stop()``."""

    def __init__(self, config: AttackConfig, core: int | None, ready_timeout: float) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.config = config
        self.pipe, child_end = ctx.Pipe()
        self.proc = ctx.Process(target=_pinned_attack, args=(config, child_end, core))
        self.proc.daemon = True
        self.proc.start()
        child_end.close()
        self.connected = self._expect("ready", ready_timeout)

    def _expect(self, kind: str, timeout: float) -> Any:
        if not self.pipe.poll(timeout):
            raise TimeoutError(f"the slowloris process did not say {kind!r} in {timeout:.0f} s")
        got, value = receive(self.pipe, "the slowloris process")
        if got != kind:
            raise RuntimeError(f"the slowloris process: {got} {value}")
        return value

    def stop(self) -> SlowTally:
        """Stop opening connections; wait until the server closed the open ones."""
        self.pipe.send("stop")
        tally: SlowTally = self._expect("done", self.config.drain_time + 30)
        return tally

    def close(self) -> None:
        """Close every slow connection now (for a caller that measures only the load
        under the attack, not how the server ends it)."""
        self.pipe.send("close")
        self._expect("done", 30)

    def __enter__(self) -> Attack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.pipe.close()
        self.proc.join(10)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join()


def _pinned_attack(
    config: AttackConfig, pipe: multiprocessing.connection.Connection, core: int | None
) -> None:
    die_with_parent()
    pin_current_process(core)
    _attack_main(config, pipe)


# -- the benchmark ----------------------------------------------------------------------------


@dataclass(frozen=True)
class SlowlorisConfig:
    slow: int = 5000
    duration: float = 30.0
    conns: int = 100
    interval: float = 2.0
    header_timeout: float = 10.0
    workers: int = 1
    load: str = "auto"
    warmup: float = 1.0
    poller: str | None = None

    def __post_init__(self) -> None:
        if min(self.slow, self.conns, self.workers) < 1:
            raise ValueError("slow, conns and workers must be at least 1")
        if min(self.duration, self.interval, self.header_timeout) <= 0:
            raise ValueError("duration, interval and header_timeout must be > 0")


@dataclass
class LoadRun:
    """The normal load's result in one phase."""

    requests: int
    duration: float
    p50_us: float
    p99_us: float
    server_cpu_seconds: float
    errors: dict[str, int]

    @property
    def requests_per_s(self) -> float:
        return self.requests / self.duration if self.duration > 0 else 0.0

    @property
    def cpu_us_per_request(self) -> float:
        return self.server_cpu_seconds * 1e6 / self.requests if self.requests else math.nan


@dataclass
class SlowlorisReport:
    config: SlowlorisConfig
    load_kind: str
    baseline: LoadRun
    attacked: LoadRun
    slow_connected: int
    tally: SlowTally
    server_rss_bytes: int
    command: str

    @property
    def throughput_ratio(self) -> float:
        base = self.baseline.requests_per_s
        return self.attacked.requests_per_s / base if base > 0 else math.nan

    @property
    def every_slow_connection_closed(self) -> bool:
        tally = self.tally
        return tally.overdue == 0 and tally.early == 0 and tally.closed == tally.opened

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["tally"]["lifetimes"] = distribution(self.tally.lifetimes)
        data["tally"]["head_times"] = distribution(self.tally.head_times)
        data["throughput_ratio"] = self.throughput_ratio
        data["every_slow_connection_closed"] = self.every_slow_connection_closed
        return data


def distribution(values: list[float]) -> dict[str, float]:
    """Count, p50, p99 and max of ``values`` (for the JSON: not every value)."""
    return {
        "count": len(values),
        "p50": _quantile(values, 0.5),
        "p99": _quantile(values, 0.99),
        "max": max(values, default=math.nan),
    }


def server_command(port: int, config: SlowlorisConfig) -> list[str]:
    """``ioreactor serve`` with the header timeout under test. The normal load's
    generator does not reconnect, so a connection is never retired after
    ``--max-requests-per-connection`` (as in ``ioreactor bench http``)."""
    command = [sys.executable, "-m", "ioreactor", "serve", "--listen", f"127.0.0.1:{port}"]
    command += ["--workers", str(config.workers), "--header-timeout", str(config.header_timeout)]
    command += ["--max-requests-per-connection", str(10**9)]
    return command + (["--poller", config.poller] if config.poller else [])


def _measure(
    config: SlowlorisConfig, kind: str, port: int, server: ServerProcess, core: int | None
) -> LoadRun:
    from ioreactor_tools.bench.http_load import HttpLoadConfig, run_http_load, run_wrk

    load = HttpLoadConfig(
        "127.0.0.1", port, conns=config.conns, duration=config.duration, warmup=config.warmup
    )
    cpu: list[float] = []

    def sample() -> None:
        cpu.append(server.sample(count_fds=False).cpu_seconds)

    if kind == "wrk":
        wrk = run_wrk(load, core=core, on_start=sample, on_end=sample)
        requests, duration, p50, p99 = wrk.requests, wrk.duration, wrk.p50_us, wrk.p99_us
        errors = wrk.errors
    else:
        own = run_http_load(load, on_start=sample, on_end=sample)
        requests, duration, errors = own.requests, own.duration, own.errors
        p50, p99 = own.latency_us(0.5), own.latency_us(0.99)
    return LoadRun(requests, duration, p50, p99, cpu[1] - cpu[0], dict(errors))


def run_slowloris(config: SlowlorisConfig, command: str = "") -> SlowlorisReport:
    """Normal load alone, then under attack; the attack's fate (see the module docstring)."""
    from ioreactor_tools.bench.http_load import wrk_path

    kind = config.load
    if kind == "auto":
        kind = "wrk" if wrk_path() is not None else "ioreactor"
    plan = core_plan()
    port = free_port()
    attack_config = AttackConfig(
        "127.0.0.1", port, config.slow, config.interval, config.header_timeout, config.poller
    )
    with ServerProcess(server_command(port, config), port=port, core=plan.server) as server:
        pin_current_process(plan.load)
        baseline = _measure(config, kind, port, server, plan.load)
        ramp_timeout = 60 + config.slow / 100
        with Attack(attack_config, plan.load, ramp_timeout) as attack:
            attacked = _measure(config, kind, port, server, plan.load)
            rss = server.sample(count_fds=False).rss_bytes
            tally = attack.stop()
    return SlowlorisReport(config, kind, baseline, attacked, attack.connected, tally, rss, command)


def summary_lines(report: SlowlorisReport) -> list[str]:
    """The report in words (the CLI prints these under its table)."""
    t = report.tally
    lines = [
        f"normal load under attack: {report.throughput_ratio:.2f} x its unattacked "
        f"throughput (target >= {THROUGHPUT_TARGET:.2f}): "
        + ("met" if report.throughput_ratio >= THROUGHPUT_TARGET else "MISSED"),
        f"slow connections: {t.opened:,} opened ({report.slow_connected:,} held at once), "
        f"{t.closed_408:,} answered 408 and closed, {t.closed_silent:,} closed silently, "
        f"{t.early} early, {t.overdue} overdue, other {dict(t.other) or 'none'}",
        f"slow connection lifetime from connect: p50 {t.lifetime(0.5):.1f} s, "
        f"p99 {t.lifetime(0.99):.1f} s, max {max(t.lifetimes, default=math.nan):.1f} s; "
        f"from the request target: p50 {t.head_time(0.5):.1f} s, "
        f"max {max(t.head_times, default=math.nan):.1f} s (header timeout "
        f"{report.config.header_timeout:g} s, allowed + {LIFETIME_SLACK:g} s)",
        "every slow connection closed by the header timeout: "
        + ("yes" if report.every_slow_connection_closed else "NO"),
    ]
    return lines
