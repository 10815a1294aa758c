"""`ioreactor bench heartbeat`: what idle heartbeating connections and frames cost.

Two measurements, each with the asyncio and uvloop peers in the same run:

``idle``    N connections that only heartbeat (PING every ``--interval`` from the client,
            PONG from the server). Server CPU % of one core over the window, and CPU µs
            per connection-second: flat as N grows means the per-connection cost does
            not depend on how many there are (one timing wheel, no timer per connection
            or per read). Load: N active heartbeat clients on one loop in this process,
            their first pings spread over one interval.
``frames``  length-prefixed 64-byte frames, 16 per write, decoded and echoed frame by
            frame (re-encoded, one write per batch). Server CPU µs per frame. Load: the
            echo load generator (byte-checked ping-pong) with valid frame batches as its
            messages.

The peers speak the same protocol with the same timing (:mod:`ioreactor.heartbeat`), as
asyncio ``Protocol`` servers with one loop timer per connection -- the idiomatic asyncio
way -- and a Python frame decoder like ours. Run one alone with
``python -m ioreactor_tools.bench.heartbeat_bench PEER --port N``.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import functools
import logging
import random
import resource
import signal
import socket
import struct
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, cast

from rich.console import Console
from rich.table import Table

from ioreactor.codec.handler import FrameHandler
from ioreactor.codec.length_field import LengthFieldCodec
from ioreactor.heartbeat import PASSIVE_DELAY, VERDICT_GRACE, HeartbeatHandler, MessageType
from ioreactor.loop.event_loop import EventLoop
from ioreactor.loop.poller import available_pollers
from ioreactor.net.connection import TcpConnection
from ioreactor.net.server import TcpServer
from ioreactor.net.sockopt import raise_nofile_limit
from ioreactor.testing import free_port
from ioreactor_tools.bench import PEER_SERVERS
from ioreactor_tools.bench.echo_load import EchoLoad, EchoLoadConfig, EchoLoadResult
from ioreactor_tools.bench.latency import LatencyHistogram
from ioreactor_tools.bench.peers import PEER_BACKLOG, peer_command, uvloop_available
from ioreactor_tools.bench.pinning import (
    IOREACTOR_COMMAND,
    CorePlan,
    ServerProcess,
    ServerWindow,
    core_plan,
    pin_current_process,
)
from ioreactor_tools.bench.report import (
    BenchResult,
    load_window_result,
    print_table,
    ratio,
    timestamped,
    window_result,
    write_json,
)
from ioreactor_tools.bench.tcp_load import run_load

MODULE = "ioreactor_tools.bench.heartbeat_bench"
SERVERS = PEER_SERVERS
#: The issue's targets: server CPU at 10,000 idle heartbeating connections, per frame.
IDLE_CPU_TARGET = 25.0
IDLE_TARGET_CONNS = 10_000
FRAME_CPU_TARGET = 1.5
#: Connections opened per burst during the ramp-up (the listen backlog is 1024).
RAMP_BATCH = 256
#: Seconds a connect, or the server's first answer on a new connection, may take.
RAMP_TIMEOUT = 30.0
#: Console width when the output is not a terminal.
TABLE_WIDTH = 160

_HEADER = struct.Struct("!IB")
_LENGTH = struct.Struct("!I")
_PROBE = struct.Struct("!Qd")
#: A heartbeat message's first byte when it is a PING.
_PING = bytes([MessageType.PING])


# -- the peers: asyncio/uvloop servers speaking the same protocols ----------------------------


def take_frames(buffer: bytearray) -> list[bytes]:
    """The peers' frame decoder: the payloads of the whole 4-byte-length-prefixed frames
    at the head of ``buffer``, taken out of it (a partial frame stays for the next read)."""
    n = len(buffer)
    pos = 0
    frames = []
    while n - pos >= 4:
        end = pos + 4 + _LENGTH.unpack_from(buffer, pos)[0]
        if end > n:
            break
        frames.append(bytes(buffer[pos + 4 : end]))
        pos = end
    del buffer[:pos]
    return frames


class HeartbeatPeer(asyncio.Protocol):
    """A passive heartbeat end (answers PINGs, pings a silent client, closes a dead one)
    with the timing of :class:`HeartbeatHandler`, on one asyncio timer per connection."""

    def __init__(self, interval: float, misses: int) -> None:
        self.loop = asyncio.get_running_loop()
        self.interval = interval
        self.misses = misses
        self.first_ping = interval * (1 + PASSIVE_DELAY)
        self.verdict_after = interval * (misses + VERDICT_GRACE)
        self.buffer = bytearray()
        self.pings = self.seq = 0
        self.last_read = self.read_mark = 0.0
        self.timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.last_read = self.read_mark = self.loop.time()
        self.timer = self.loop.call_at(self.last_read + self.first_ping, self.check)

    def data_received(self, data: bytes) -> None:
        self.last_read = self.loop.time()
        self.buffer += data
        replies = [
            _HEADER.pack(len(message), MessageType.PONG) + message[1:]
            for message in take_frames(self.buffer)
            if message[:1] == _PING
        ]
        if replies:
            self.transport.write(b"".join(replies))

    def check(self) -> None:
        now = self.loop.time()
        last = self.last_read
        if last != self.read_mark:
            self.read_mark = last
            self.pings = 0
        if last + self.verdict_after <= now:
            self.transport.abort()
            return
        next_ping = last + self.first_ping + self.pings * self.interval
        if next_ping <= now:
            self.pings += 1
            self.seq += 1
            probe = _PROBE.pack(self.seq, now)
            self.transport.write(_HEADER.pack(1 + len(probe), MessageType.PING) + probe)
            next_ping += self.interval
        due = last + self.verdict_after
        if self.pings < self.misses and next_ping < due:
            due = next_ping
        self.timer = self.loop.call_at(due, self.check)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer is not None:
            self.timer.cancel()


class FrameEchoPeer(asyncio.Protocol):
    """Decodes 4-byte length-prefixed frames and writes each batch back, re-encoded."""

    def __init__(self) -> None:
        self.buffer = bytearray()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        frames = take_frames(self.buffer)
        if frames:
            out = []
            for frame in frames:
                out.append(_LENGTH.pack(len(frame)))
                out.append(frame)
            self.transport.write(b"".join(out))


class FrameEcho(FrameHandler):
    """ioreactor's frame echo: every batch decoded from one read goes back in one send."""

    def __init__(self) -> None:
        super().__init__(LengthFieldCodec(4, initial_bytes_to_strip=4))
        self._encode_many = self.codec.encode_many

    def on_frames(self, conn: TcpConnection, frames: list[bytes]) -> None:
        conn.send(self._encode_many(frames))


async def _serve_asyncio(factory: Callable[[], asyncio.Protocol], host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    server = await loop.create_server(factory, host, port, backlog=PEER_BACKLOG)
    async with server:
        await stop.wait()


def _serve_ioreactor_frames(host: str, port: int, poller: str | None) -> None:
    loop = EventLoop(poller, name="frame-echo")
    server = TcpServer(loop, (host, port), FrameEcho()).start()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, loop.stop)
    loop.run()
    server.close()
    loop.close()


PEERS = (
    "asyncio-heartbeat",
    "uvloop-heartbeat",
    "asyncio-frames",
    "uvloop-frames",
    "ioreactor-frames",
)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m ioreactor_tools.bench.heartbeat_bench PEER --port N``: one benchmark server."""
    parser = argparse.ArgumentParser(prog=f"python -m {MODULE}", description=main.__doc__)
    parser.add_argument("peer", choices=PEERS)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--misses", type=int, default=3)
    parser.add_argument("--poller", choices=available_pollers(), default=None)
    args = parser.parse_args(argv)
    raise_nofile_limit()
    if args.peer == "ioreactor-frames":
        _serve_ioreactor_frames(args.host, args.port, args.poller)
        return 0
    factory: Callable[[], asyncio.Protocol] = FrameEchoPeer
    if args.peer.endswith("heartbeat"):
        factory = functools.partial(HeartbeatPeer, args.interval, args.misses)
    coro = _serve_asyncio(factory, args.host, args.port)
    if args.peer.startswith("uvloop"):
        if (reason := uvloop_available()) is not None:
            parser.error(reason)
        import uvloop

        uvloop.run(coro)
    else:
        asyncio.run(coro)
    return 0


# -- idle heartbeating connections -------------------------------------------------------------


def idle_server_command(
    name: str, port: int, interval: float, misses: int, poller: str | None
) -> list[str]:
    if name == "ioreactor":
        command = [
            *IOREACTOR_COMMAND,
            "heartbeat",
            "serve",
            "--listen",
            f"127.0.0.1:{port}",
            "--interval",
            str(interval),
            "--misses",
            str(misses),
        ]
        return [*command, "--poller", poller] if poller else command
    timing = ["--interval", str(interval), "--misses", str(misses)]
    return [*peer_command(MODULE, f"{name}-heartbeat", port), *timing]


class HeartbeatLoad(HeartbeatHandler):
    """The clients: active heartbeat ends that record PING round trips and unplanned closes."""

    def __init__(self, interval: float, misses: int) -> None:
        super().__init__(interval, misses, active=True)
        self.latency = LatencyHistogram()
        self.errors: collections.Counter[str] = collections.Counter()
        self.closing = False
        #: Connections whose first PING (sent at once) is not answered yet.
        self.awaiting: set[TcpConnection] = set()

    def probe(self, conn: TcpConnection) -> None:
        """PING now: the PONG proves the server has accepted the connection."""
        self.awaiting.add(conn)
        conn.send(self.encode(MessageType.PING, _PROBE.pack(0, conn.loop.time())))

    def on_pong(self, conn: TcpConnection, seq: int, rtt: float) -> None:
        self.awaiting.discard(conn)
        self.latency.record(int(rtt * 1e9))

    def on_close(self, conn: TcpConnection) -> None:
        super().on_close(conn)
        if not self.closing:
            self.errors[f"closed:{type(conn.error).__name__ if conn.error else 'eof'}"] += 1


@dataclass
class IdleRun:
    result: BenchResult
    cpu_percent: float
    us_per_conn_second: float
    load_cpu_percent: float


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure_idle(
    name: str,
    conns: int,
    interval: float,
    misses: int,
    warmup: float,
    duration: float,
    plan: CorePlan,
    poller: str | None,
) -> IdleRun:
    """``conns`` heartbeating clients against server ``name``; its CPU over ``duration``."""
    port = free_port()
    command = idle_server_command(name, port, interval, misses, poller)
    with ServerProcess(command, port=port, core=plan.server) as server:
        loop = EventLoop(poller, name="heartbeat-load")
        load = HeartbeatLoad(interval, misses)
        live: list[TcpConnection] = []
        rng = random.Random(1)
        try:
            for first in range(0, conns, RAMP_BATCH):
                _ramp(loop, load, port, min(RAMP_BATCH, conns - first), interval, live, rng)
            _run_for(loop, warmup)
            pongs, answered, load_cpu = load.pongs_received, load.pings_answered, _own_cpu()
            load.latency = LatencyHistogram()
            window = ServerWindow(server)
            window.open()
            start = time.perf_counter()
            _run_for(loop, duration)
            seconds = time.perf_counter() - start
            window.close()
            load_cpu = _own_cpu() - load_cpu
            pongs = load.pongs_received - pongs
            answered = load.pings_answered - answered
        finally:
            load.closing = True
            for conn in live:
                conn.force_close()
            loop.close()
    result = window_result(
        name,
        conns,
        ops=pongs,
        duration=seconds,
        latency_us=load.latency.percentile_us,
        errors=dict(load.errors),
        window=window,
        unit="ping",
        extra={
            "interval": interval,
            "misses": misses,
            "connected": len(live),
            "server_pings_per_s": answered / seconds,
            "command": " ".join(command),
        },
    )
    cpu = result.server_cpu_seconds
    return IdleRun(
        result,
        cpu_percent=100 * cpu / seconds,
        us_per_conn_second=cpu * 1e6 / (len(live) * seconds) if live else float("nan"),
        load_cpu_percent=100 * load_cpu / seconds,
    )


def _ramp(
    loop: EventLoop,
    load: HeartbeatLoad,
    port: int,
    count: int,
    interval: float,
    live: list[TcpConnection],
    rng: random.Random,
) -> None:
    """Open ``count`` connections and wait until the server has answered a PING on each.

    A connect completes in the kernel before the server accepts; opening connections
    faster than the server accepts overflows its accept queue, and the kernel then
    drops the handshake's last ACK and retries it seconds later. Waiting for a PONG per
    batch keeps the queue short.
    """
    batch = []
    for _ in range(count):
        try:
            sock = socket.create_connection(("127.0.0.1", port), timeout=RAMP_TIMEOUT)
        except OSError as exc:
            load.errors[f"connect:{type(exc).__name__}"] += 1
            continue
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn = TcpConnection(loop, sock, sock.getpeername(), load)
        conn.start()
        load.probe(conn)
        batch.append(conn)
    deadline = time.monotonic() + RAMP_TIMEOUT
    while load.awaiting and time.monotonic() < deadline:
        loop.run_once(0.1)
    if load.awaiting:
        load.errors["ramp:unanswered"] += len(load.awaiting)
        load.awaiting.clear()
    for conn in batch:
        # Spread the next pings over one interval, as clients that came at different
        # times would be, instead of one burst per batch.
        conn.last_read -= rng.uniform(0, interval)
    live.extend(batch)


def _run_for(loop: EventLoop, seconds: float) -> None:
    timer = loop.call_later(seconds, loop.stop)
    loop.run()
    timer.cancel()


# -- frame decoding ----------------------------------------------------------------------------


def frame_server_command(name: str, port: int, poller: str | None) -> list[str]:
    command = peer_command(MODULE, f"{name}-frames", port)
    return [*command, "--poller", poller] if poller and name == "ioreactor" else command


@dataclass(kw_only=True)
class FrameLoadResult(EchoLoadResult):
    """The frame load's result, counted in ``frames``: ``messages`` x frames per message."""

    frames: int

    NOUN: ClassVar[str] = "frames"
    RATE_UNIT: ClassVar[str] = "frame/s"


class FrameLoad(EchoLoad):
    """The echo load with ``frames`` valid length-prefixed frames as each message: the
    servers decode and re-encode them, so the echo is still byte-identical."""

    def __init__(self, config: EchoLoadConfig, frames: int, frame_size: int) -> None:
        super().__init__(config)
        self.frames = frames
        rng = random.Random(config.seed)
        codec = LengthFieldCodec(4)
        self.payloads = [
            codec.encode_many([rng.randbytes(frame_size) for _ in range(frames)])
            for _ in self.payloads
        ]

    def _result(self) -> FrameLoadResult:
        echoed = super()._result()
        return FrameLoadResult(**vars(echoed), frames=echoed.messages * self.frames)


def measure_frames(
    name: str,
    conns: int,
    frames: int,
    frame_size: int,
    warmup: float,
    duration: float,
    plan: CorePlan,
    poller: str | None,
) -> BenchResult:
    port = free_port()
    command = frame_server_command(name, port, poller)
    config = EchoLoadConfig(
        host="127.0.0.1",
        port=port,
        conns=conns,
        size=frames * (4 + frame_size),
        duration=duration,
        warmup=warmup,
        poller=poller,
        seed=7,
    )
    with ServerProcess(command, port=port, core=plan.server) as server:
        window = ServerWindow(server)
        frame_load = functools.partial(FrameLoad, frames=frames, frame_size=frame_size)
        load = run_load(frame_load, config, on_start=window.open, on_end=window.close)
    return load_window_result(
        name,
        conns,
        load,
        window,
        extra={
            "frames_per_write": frames,
            "frame_size": frame_size,
            "batches": load.messages,
            "command": " ".join(command),
        },
    )


# -- the command -------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    """The `ioreactor bench heartbeat` command (arguments parsed in cli/bench/heartbeat.py)."""
    # The load's own heartbeat logs (misses while a server lags) would drown the tables.
    logging.getLogger("ioreactor.heartbeat").setLevel(logging.WARNING)
    width = None if sys.stdout.isatty() else TABLE_WIDTH
    console = Console(width=width)
    plan = core_plan()
    pin_current_process(plan.load)
    raise_nofile_limit()
    if not plan.pinned:
        console.print("[yellow]fewer than two cores: server and load share one (not pinned)[/]")
    servers = list(args.servers)
    if "uvloop" in servers and (reason := uvloop_available()) is not None:
        console.print(f"[yellow]skipping uvloop: {reason}[/]")
        servers.remove("uvloop")
    command = " ".join(["ioreactor bench heartbeat", *sys.argv[3:]])
    failed = False
    if args.only in (None, "idle"):
        failed |= _run_idle(args, servers, plan, console, command)
    if args.only in (None, "frames"):
        failed |= _run_frames(args, servers, plan, console, command)
    return 1 if failed else 0


def _run_idle(
    args: argparse.Namespace,
    servers: list[str],
    plan: CorePlan,
    console: Console,
    command: str,
) -> bool:
    warmup = 2 * args.interval if args.warmup is None else args.warmup
    runs: list[IdleRun] = []
    for conns in args.conns:
        for name in servers:
            console.print(f"[dim]idle: {name}, {conns:,} conns, {args.duration:g} s ...[/]")
            runs.append(
                measure_idle(
                    name,
                    conns,
                    args.interval,
                    args.misses,
                    warmup,
                    args.duration,
                    plan,
                    args.poller,
                )
            )
    table = Table(title=f"idle heartbeating connections, PING every {args.interval:g} s")
    for column in (
        "server",
        "conns",
        "server CPU %",
        "µs / conn-s",
        "ping/s",
        "server ping/s",
        "p99 ping µs",
        "load CPU %",
        "errors",
    ):
        table.add_column(column, justify="left" if column == "server" else "right")
    for r in runs:
        table.add_row(
            r.result.name,
            f"{r.result.conns:,}",
            f"{r.cpu_percent:.1f}",
            f"{r.us_per_conn_second:.2f}",
            f"{r.result.ops_per_s:,.0f}",
            f"{r.result.extra['server_pings_per_s']:,.0f}",
            f"{r.result.p99_us:,.0f}",
            f"{r.load_cpu_percent:.0f}",
            ", ".join(f"{k} {v}" for k, v in sorted(r.result.errors.items())) or "0",
        )
    console.print(table)
    results = [r.result for r in runs]
    print_table(
        results,
        [s for s in ("asyncio", "uvloop") if s in servers],
        title="the same runs, per ping answered",
        console=console,
    )
    mine = [r for r in runs if r.result.name == "ioreactor"]
    for r in mine:
        if r.result.conns == IDLE_TARGET_CONNS:
            verdict = "meets" if r.cpu_percent < IDLE_CPU_TARGET else "MISSES"
            console.print(
                f"ioreactor at {r.result.conns:,} conns: {r.cpu_percent:.1f} % of a core "
                f"({verdict} the target < {IDLE_CPU_TARGET:g} %)"
            )
    if len(mine) > 1:
        growth = mine[-1].us_per_conn_second / mine[0].us_per_conn_second
        console.print(
            f"ioreactor CPU per connection-second, {mine[-1].result.conns:,} vs "
            f"{mine[0].result.conns:,} conns: x{growth:.2f} (1.00 = flat)"
        )
    for r in runs:
        if r.load_cpu_percent > 90:
            console.print(
                f"[yellow]{r.result.name} {r.result.conns:,}: the load saturated "
                "its core; the server was not fully loaded[/]"
            )
    path = write_json(
        timestamped("heartbeat-idle", "json", Path(args.out)),
        results,
        command=command,
        meta={
            "cpu_percent": {f"{r.result.name}/{r.result.conns}": r.cpu_percent for r in runs},
            "us_per_conn_second": {
                f"{r.result.name}/{r.result.conns}": r.us_per_conn_second for r in runs
            },
            "cores": {"server": plan.server, "load": plan.load},
        },
    )
    console.print(f"results: {path}")
    return any(r.result.errors for r in runs)


def _run_frames(
    args: argparse.Namespace,
    servers: list[str],
    plan: CorePlan,
    console: Console,
    command: str,
) -> bool:
    warmup = 1.0 if args.warmup is None else args.warmup
    results = []
    for name in servers:
        console.print(
            f"[dim]frames: {name}, {args.frame_conns} conns, {args.frames_per_write} x "
            f"{args.frame_size} B per write, {args.duration:g} s ...[/]"
        )
        results.append(
            measure_frames(
                name,
                args.frame_conns,
                args.frames_per_write,
                args.frame_size,
                warmup,
                args.duration,
                plan,
                args.poller,
            )
        )
    baselines = [s for s in ("asyncio", "uvloop") if s in servers]
    print_table(
        results,
        baselines,
        title=f"{args.frame_size}-byte length-prefixed frames, {args.frames_per_write} per "
        "write, decoded and echoed",
        console=console,
    )
    for r in results:
        if r.name == "ioreactor":
            verdict = "meets" if r.cpu_us_per_op <= FRAME_CPU_TARGET else "MISSES"
            peers = ", ".join(
                f"x {b} {value:.2f}" for b in baselines if (value := ratio(r, results, b))
            )
            console.print(
                f"ioreactor: {r.cpu_us_per_op:.2f} µs of server CPU per frame ({verdict} the "
                f"target <= {FRAME_CPU_TARGET:g} µs){'; ' + peers if peers else ''}"
            )
    path = write_json(
        timestamped("heartbeat-frames", "json", Path(args.out)),
        results,
        command=command,
        meta={"cores": {"server": plan.server, "load": plan.load}},
    )
    console.print(f"results: {path}")
    return any(r.errors for r in results)


if __name__ == "__main__":
    sys.exit(main())
