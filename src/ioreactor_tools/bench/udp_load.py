"""Echo loads for datagrams and for any stream address, their peers, and a server runner.

``ioreactor bench udp`` and ``ioreactor bench unix`` use these; ``ioreactor echo-client``
drives TCP (:mod:`ioreactor_tools.bench.echo_load`).

Datagram load (UDP or Unix datagram): ``flows`` connected client endpoints, each with
``inflight`` datagrams of ``size`` bytes outstanding. A datagram carries an 8-byte
sequence number and a fixed random body; the echo must match both. UDP may drop: a
datagram unanswered after ``loss_timeout`` counts as ``lost`` and its flow sends a new
one, so a loss never stalls the load.

Stream load: ``conns`` connections to any stream address (``tcp://``, ``unix://``), each
playing ping-pong with ``size``-byte messages, every byte checked. One client for both
transports, so a TCP-vs-Unix comparison differs only in the socket family.

Both run on ioreactor's own loop, and report an :class:`EchoLoadResult` whose messages
were sent inside the measured window; ``on_start``/``on_end`` bracket that window (where
the bench samples the server's CPU).

Run a server for the benches as ``python -m ioreactor_tools.bench.udp_load SERVER --listen ADDR``:
``ioreactor`` (:func:`ioreactor.echo.start_echo`, what ``ioreactor echo`` runs),
``asyncio`` (a minimal ``asyncio.DatagramProtocol`` echo, or ``Protocol`` for streams) or
``uvloop`` (the same on uvloop).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import math
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

from ioreactor.loop.event_loop import EventLoop
from ioreactor.loop.timers import TimerHandle
from ioreactor.net.address import Address, parse_address
from ioreactor.net.buffer import Buffer
from ioreactor.net.client import TcpClient
from ioreactor.net.connection import TcpConnection
from ioreactor.net.handlers import DatagramHandler, Handler
from ioreactor.net.udp import UdpEndpoint, udp_client
from ioreactor_tools.bench.echo_load import EchoLoadResult
from ioreactor_tools.bench.latency import LatencyHistogram
from ioreactor_tools.bench.pinning import ServerProcess, ServerWindow
from ioreactor_tools.bench.report import BenchResult, load_window_result

#: Seconds after which an unanswered datagram counts as lost (and is replaced).
LOSS_TIMEOUT = 0.5
#: Seconds to wait for the replies in flight when the window closes.
DRAIN_TIMEOUT = 2.0
#: Seconds all stream connections may take to connect.
CONNECT_TIMEOUT = 10.0
#: How long a server may take to answer its first echo.
READY_TIMEOUT = 15.0
#: Bytes of each datagram that carry its sequence number.
SEQ_BYTES = 8

WARMUP, MEASURE, DRAIN, DONE = range(4)


@dataclass(frozen=True)
class LoadConfig:
    """``address``: any echo address; ``conns``: datagram flows or stream connections."""

    address: str
    conns: int = 64
    size: int = 512
    duration: float = 5.0
    warmup: float = 1.0
    inflight: int = 1
    poller: str | None = None
    loss_timeout: float = LOSS_TIMEOUT

    def __post_init__(self) -> None:
        for name in ("conns", "inflight"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.duration <= 0 or self.warmup < 0:
            raise ValueError("duration must be > 0 and warmup >= 0")
        minimum = SEQ_BYTES + 1 if not parse_address(self.address).is_stream else 1
        if self.size < minimum:
            raise ValueError(f"size must be at least {minimum} bytes, got {self.size}")


class _Phases:
    """Warm-up, the measured window and the drain, shared by both loads."""

    def __init__(self, config: LoadConfig) -> None:
        self.config = config
        self.loop = EventLoop(config.poller, name="load", slow_iteration=math.inf)
        self.phase = WARMUP
        self.messages = 0
        self.outstanding = 0
        self.connected = 0
        self.latency = LatencyHistogram()
        self.errors: collections.Counter[str] = collections.Counter()
        self.window = 0.0
        self.window_start = 0
        self._drain_timer: TimerHandle | None = None
        self._perf_ns = time.perf_counter_ns

    def run(
        self, on_start: Callable[[], object] | None, on_end: Callable[[], object] | None
    ) -> EchoLoadResult:
        try:
            self.open()
            if self.config.warmup > 0:
                self._traffic(WARMUP, self.config.warmup)
            if on_start is not None:
                on_start()
            self.messages = 0
            self.latency = LatencyHistogram()
            self.window_start = self._perf_ns()
            self._traffic(MEASURE, self.config.duration)
            if on_end is not None:
                on_end()
            return EchoLoadResult(
                conns=self.config.conns,
                connected=self.connected,
                messages=self.messages,
                bytes=self.messages * self.config.size,
                duration=self.window,
                latency=self.latency,
                errors=dict(self.errors),
            )
        finally:
            self.phase = DONE
            self.close()
            self.loop.close()

    def _traffic(self, phase: int, seconds: float) -> None:
        self.phase = phase
        self.start_sending()
        timer = self.loop.call_later(seconds, self._end_window)
        self.loop.run()
        timer.cancel()
        if self._drain_timer is not None:
            self._drain_timer.cancel()
            self._drain_timer = None

    def _end_window(self) -> None:
        if self.phase == MEASURE:
            self.window = (self._perf_ns() - self.window_start) / 1e9
        self.phase = DRAIN
        if self.outstanding <= 0:
            self.loop.stop()
        else:
            self._drain_timer = self.loop.call_later(DRAIN_TIMEOUT, self._drain_expired)

    def _drain_expired(self) -> None:
        if self.phase == DRAIN:
            self.errors["unanswered"] += self.outstanding
            self.forget_outstanding()
            self.loop.stop()

    def answered(self, sent_ns: int) -> bool:
        """Book one echo; True if the sender should send the next message."""
        self.outstanding -= 1
        phase = self.phase
        if phase == MEASURE:
            self.latency.record(self._perf_ns() - sent_ns)
            self.messages += 1
            return True
        if phase == WARMUP:
            return True
        if phase == DRAIN:
            if sent_ns >= self.window_start and self.window_start:
                self.latency.record(self._perf_ns() - sent_ns)
                self.messages += 1
            if self.outstanding <= 0:
                self.loop.stop()
        return False

    # -- what each load provides ------------------------------------------------------------

    def open(self) -> None:
        raise NotImplementedError

    def start_sending(self) -> None:
        raise NotImplementedError

    def forget_outstanding(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class _Flow:
    __slots__ = ("inflight", "next_seq")

    def __init__(self) -> None:
        self.inflight: dict[int, int] = {}
        self.next_seq = 0


class DatagramLoad(_Phases, DatagramHandler):
    """Connected datagram flows; see the module docstring."""

    def __init__(self, config: LoadConfig) -> None:
        super().__init__(config)
        self.body = os.urandom(config.size - SEQ_BYTES)
        self.flows: list[UdpEndpoint] = []

    def open(self) -> None:
        for _ in range(self.config.conns):
            endpoint = udp_client(self.loop, self.config.address, self)
            endpoint.context = _Flow()
            self.flows.append(endpoint)
        self.connected = len(self.flows)
        self.loop.call_every(self.config.loss_timeout / 2, self._reap_lost)

    def start_sending(self) -> None:
        for endpoint in self.flows:
            flow: _Flow = endpoint.context
            for _ in range(self.config.inflight - len(flow.inflight)):
                self._send(endpoint, flow)

    def _send(self, endpoint: UdpEndpoint, flow: _Flow) -> None:
        seq = flow.next_seq
        flow.next_seq = seq + 1
        flow.inflight[seq] = self._perf_ns()
        self.outstanding += 1
        endpoint.send(seq.to_bytes(SEQ_BYTES, "big") + self.body)

    def on_datagram(self, endpoint: UdpEndpoint, data: bytes, addr: Any) -> None:
        flow: _Flow = endpoint.context
        sent_ns = flow.inflight.pop(int.from_bytes(data[:SEQ_BYTES], "big"), None)
        if sent_ns is None:
            self.errors["late or unknown"] += 1  # answered after it counted as lost
            return
        if data[SEQ_BYTES:] != self.body:
            self.errors["integrity"] += 1
        if self.answered(sent_ns):
            self._send(endpoint, flow)

    def on_error(self, endpoint: UdpEndpoint, exc: OSError) -> None:
        self.errors[f"error:{exc.strerror or exc}"] += 1

    def _reap_lost(self) -> None:
        if self.phase not in (WARMUP, MEASURE, DRAIN):
            return
        deadline = self._perf_ns() - int(self.config.loss_timeout * 1e9)
        for endpoint in self.flows:
            flow: _Flow = endpoint.context
            lost = [seq for seq, sent in flow.inflight.items() if sent < deadline]
            for seq in lost:
                del flow.inflight[seq]
                self.errors["lost"] += 1
                self.outstanding -= 1
                if self.phase in (WARMUP, MEASURE):
                    self._send(endpoint, flow)
                elif self.outstanding <= 0:
                    self.loop.stop()

    def forget_outstanding(self) -> None:
        for endpoint in self.flows:
            endpoint.context.inflight.clear()
        self.outstanding = 0

    def close(self) -> None:
        for endpoint in self.flows:
            endpoint.force_close()


class StreamLoad(_Phases, Handler):
    """Ping-pong over stream connections to any stream address."""

    def __init__(self, config: LoadConfig) -> None:
        super().__init__(config)
        self.payload = os.urandom(config.size)
        self.clients: list[TcpClient] = []
        self.live: list[TcpConnection] = []

    def open(self) -> None:
        for _ in range(self.config.conns):
            client = TcpClient(
                self.loop,
                self.config.address,
                self,
                retry=False,
                on_connect_failed=self._connect_failed,
            )
            self.clients.append(client)
            client.connect()
        timer = self.loop.call_later(CONNECT_TIMEOUT, self.loop.stop)
        self.loop.run()
        timer.cancel()
        if not self.live:
            raise RuntimeError(f"no connection to {self.config.address}: {dict(self.errors)}")

    def _connect_failed(self, exc: OSError) -> None:
        self.errors[f"connect:{exc.strerror}"] += 1
        self._maybe_ready()

    def _maybe_ready(self) -> None:
        if len(self.live) + sum(self.errors.values()) >= self.config.conns:
            self.loop.stop()

    def on_connection(self, conn: TcpConnection) -> None:
        self.live.append(conn)
        self.connected += 1
        self._maybe_ready()

    def start_sending(self) -> None:
        for conn in self.live:
            if conn.context is None:
                self._send(conn)

    def _send(self, conn: TcpConnection) -> None:
        conn.context = self._perf_ns()
        self.outstanding += 1
        conn.send(self.payload)

    def on_message(self, conn: TcpConnection, buffer: Buffer) -> None:
        if len(buffer) < self.config.size:
            return
        if buffer.read(self.config.size) != self.payload or len(buffer):
            self.errors["integrity"] += 1
            buffer.retrieve_all()
        sent_ns: int = conn.context
        conn.context = None
        if self.answered(sent_ns):
            self._send(conn)

    def on_close(self, conn: TcpConnection) -> None:
        if self.phase != DONE:
            self.errors["closed"] += 1
            if conn.context is not None:
                self.outstanding -= 1

    def forget_outstanding(self) -> None:
        self.outstanding = 0

    def close(self) -> None:
        for client in self.clients:
            client.stop()
        for conn in self.live:
            conn.force_close()


def run_load(
    config: LoadConfig,
    *,
    on_start: Callable[[], object] | None = None,
    on_end: Callable[[], object] | None = None,
) -> EchoLoadResult:
    """The datagram or stream load, by the kind of ``config.address``."""
    load: _Phases
    if parse_address(config.address).is_stream:
        load = StreamLoad(config)
    else:
        load = DatagramLoad(config)
    return load.run(on_start, on_end)


# -- servers ----------------------------------------------------------------------------------

SERVERS = ("ioreactor", "asyncio", "uvloop")


def server_command(name: str, addresses: Sequence[str]) -> list[str]:
    """The command that runs echo server ``name`` on ``addresses``."""
    if name not in SERVERS:
        raise ValueError(f"unknown server {name!r} (known: {', '.join(SERVERS)})")
    listen = [arg for address in addresses for arg in ("--listen", address)]
    return [sys.executable, "-m", "ioreactor_tools.bench.udp_load", name, *listen]


def wait_ready(
    address: Address, timeout: float = READY_TIMEOUT, proc: subprocess.Popen[bytes] | None = None
) -> None:
    """Return once ``address`` echoes one message; raise if it never does."""
    deadline = time.monotonic() + timeout
    while True:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with status {proc.returncode} before serving")
        try:
            with socket.socket(address.family, address.socktype) as sock:
                sock.settimeout(0.5)
                if address.is_unix and not address.is_stream:
                    sock.bind("")
                sock.connect(address.sockaddr)
                sock.send(b"ready?")
                if sock.recv(16) == b"ready?":
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{address} did not echo within {timeout} s")
        time.sleep(0.05)


class EchoServerProcess(ServerProcess):
    """An echo server command pinned to ``core``, in its own process group, ready once
    ``address`` (UDP or a unix socket) echoes a message."""

    def __init__(self, command: Sequence[str], address: str, core: int | None) -> None:
        self.address = parse_address(address)
        super().__init__(command, port=0, core=core)  # no TCP port: wait_ready says

    def wait_ready(self, proc: subprocess.Popen[bytes]) -> None:
        wait_ready(self.address, proc=proc)


def measure_server(
    name: str, command: Sequence[str], config: LoadConfig, core: int | None
) -> BenchResult:
    """Run ``command`` pinned to ``core``, drive ``config``'s load, charge its CPU per message."""
    with EchoServerProcess(command, config.address, core) as server:
        window = ServerWindow(server)
        load = run_load(config, on_start=window.open, on_end=window.close)
    return load_window_result(
        name,
        config.conns,
        load,
        window,
        extra={
            "address": config.address,
            "size": config.size,
            "inflight": config.inflight,
            "command": " ".join(command),
        },
    )


def free_address(kind: str, directory: str) -> str:
    """A fresh echo address of ``kind`` (a free loopback port, or a path in ``directory``)."""
    if kind in ("unix", "unix-dgram"):
        return f"{kind}://{directory}/{kind}-{os.getpid()}-{time.monotonic_ns()}.sock"
    socktype = socket.SOCK_STREAM if kind == "tcp" else socket.SOCK_DGRAM
    with socket.socket(socket.AF_INET, socktype) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"{kind}://127.0.0.1:{port}"


class _DatagramEcho(asyncio.DatagramProtocol):
    """The minimal asyncio UDP echo: the peer ``ioreactor bench udp`` measures against."""

    transport: asyncio.DatagramTransport

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.transport.sendto(data, addr)


class _StreamEcho(asyncio.Protocol):
    transport: asyncio.Transport

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)


async def _serve_asyncio(addresses: Sequence[str]) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    closers: list[Callable[[], object]] = []
    for text in addresses:
        address = parse_address(text)
        if address.kind == "udp":
            transport, _ = await loop.create_datagram_endpoint(
                _DatagramEcho, local_addr=cast(tuple[str, int], address.sockaddr)
            )
            closers.append(transport.close)
        elif address.kind == "unix-dgram":
            transport, _ = await loop.create_datagram_endpoint(
                _DatagramEcho, local_addr=address.sockaddr, family=socket.AF_UNIX
            )
            closers.append(transport.close)
        elif address.kind == "unix":
            server = await loop.create_unix_server(_StreamEcho, cast(str, address.sockaddr))
            closers.append(server.close)
        else:
            host, port = cast(tuple[str, int], address.sockaddr)
            server = await loop.create_server(_StreamEcho, host, port)
            closers.append(server.close)
    await stop.wait()
    for close in closers:
        close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ioreactor_tools.bench.udp_load", description="echo servers for the benches"
    )
    parser.add_argument("server", choices=SERVERS)
    parser.add_argument("--listen", action="append", required=True, help="address (repeat)")
    args = parser.parse_args(argv)
    if args.server == "ioreactor":
        from ioreactor.echo import serve_echo

        return serve_echo(args.listen)
    elif args.server == "uvloop":
        import uvloop

        uvloop.run(_serve_asyncio(args.listen))
    else:
        asyncio.run(_serve_asyncio(args.listen))
    return 0


if __name__ == "__main__":
    sys.exit(main())
