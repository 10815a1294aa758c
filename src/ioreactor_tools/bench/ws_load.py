"""The WebSocket echo load of ``ioreactor bench asgi``: N connections, each a ping-pong
of one masked binary message at a time, every reply's size checked.

Each connection does the opening handshake, then sends a message of ``size`` bytes and
waits for the whole echo (the server's unmasked frame: header and payload) before the
next; latency is from that send to the reply's last byte. After an unmeasured warm-up,
``on_start`` / ``on_end`` bracket the window in which messages are counted (where the
benchmark reads the server's CPU). The load is asyncio on uvloop when it is installed
(a cheap client leaves the load core's time to the load), in the calling process.
"""

from __future__ import annotations

import asyncio
import base64
import importlib
import os
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, cast

#: Connections opened at a time while ramping up.
CONNECT_BATCH = 100
#: Seconds a connection may take to connect and finish its handshake.
CONNECT_TIMEOUT = 10.0
_MASK = b"\x11\x22\x33\x44"


@dataclass(frozen=True)
class WsLoadConfig:
    host: str
    port: int
    conns: int
    size: int = 1024
    duration: float = 10.0
    warmup: float = 1.0
    path: str = "/"


@dataclass
class WsLoadResult:
    messages: int
    duration: float
    connected: int
    latencies_us: list[float]
    errors: dict[str, int] = field(default_factory=dict)

    RATE_UNIT: ClassVar[str] = "msg/s"

    @property
    def count(self) -> int:
        return self.messages

    def latency_us(self, q: float) -> float:
        if not self.latencies_us:
            return float("nan")
        ordered = sorted(self.latencies_us)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _frame(payload: bytes) -> bytes:
    """A masked binary frame (as a client sends it)."""
    n = len(payload)
    if n < 126:
        head = bytes((0x82, 0x80 | n))
    elif n < 1 << 16:
        head = struct.pack("!BBH", 0x82, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x82, 0x80 | 127, n)
    key = int.from_bytes(_MASK * (n // 4 + 1), "big") >> (8 * (4 - n % 4) if n % 4 else 0)
    masked = (int.from_bytes(payload, "big") ^ (key & ((1 << (8 * n)) - 1))).to_bytes(n, "big")
    return head + _MASK + masked


def reply_size(size: int) -> int:
    """Bytes of the server's (unmasked) frame echoing ``size`` bytes."""
    return size + (2 if size < 126 else 4 if size < 1 << 16 else 10)


class _Counter:
    def __init__(self) -> None:
        self.measuring = False
        self.messages = 0
        self.latencies: list[float] = []
        self.errors: dict[str, int] = {}

    def error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1


class _EchoClient(asyncio.Protocol):
    def __init__(self, config: WsLoadConfig, counter: _Counter, upgraded: asyncio.Future[None]):
        self.config = config
        self.counter = counter
        self.upgraded = upgraded
        self.frame = _frame(os.urandom(config.size))
        self.expect = reply_size(config.size)
        self.head = b""
        self.pending = 0
        self.sent_at = 0.0
        self.transport: asyncio.Transport | None = None
        self.running = True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # (uvloop's is not a subclass)
        key = base64.b64encode(os.urandom(16)).decode()
        self.transport.write(
            (
                f"GET {self.config.path} HTTP/1.1\r\nHost: {self.config.host}\r\n"
                "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )

    def data_received(self, data: bytes) -> None:
        if not self.upgraded.done():
            self.head += data
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                return
            if not self.head.startswith(b"HTTP/1.1 101"):
                self.upgraded.set_exception(ConnectionError(self.head[:80].decode("latin-1")))
                return
            rest = len(self.head) - end - 4
            self.upgraded.set_result(None)
            self._send()
            if rest:
                self.data_received_frames(rest)
            return
        self.data_received_frames(len(data))

    def data_received_frames(self, n: int) -> None:
        self.pending += n
        if self.pending >= self.expect:
            if self.pending > self.expect:
                self.counter.error("size")
            self.pending = 0
            counter = self.counter
            if counter.measuring:
                counter.messages += 1
                counter.latencies.append((time.perf_counter() - self.sent_at) * 1e6)
            if self.running:
                self._send()

    def _send(self) -> None:
        assert self.transport is not None
        self.sent_at = time.perf_counter()
        self.transport.write(self.frame)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.running:
            self.counter.error("closed")
        if not self.upgraded.done():
            self.upgraded.set_exception(exc or ConnectionError("closed in the handshake"))


async def _run(
    config: WsLoadConfig, on_start: Callable[[], object] | None, on_end: Callable[[], object] | None
) -> WsLoadResult:
    loop = asyncio.get_running_loop()
    counter = _Counter()
    clients: list[_EchoClient] = []

    async def one() -> None:
        upgraded: asyncio.Future[None] = loop.create_future()
        client = _EchoClient(config, counter, upgraded)
        await loop.create_connection(lambda: client, config.host, config.port)
        await asyncio.wait_for(upgraded, CONNECT_TIMEOUT)
        clients.append(client)

    for start in range(0, config.conns, CONNECT_BATCH):
        batch = [one() for _ in range(min(CONNECT_BATCH, config.conns - start))]
        for outcome in await asyncio.gather(*batch, return_exceptions=True):
            if isinstance(outcome, BaseException):
                counter.error(f"connect:{type(outcome).__name__}")
    await asyncio.sleep(config.warmup)
    if on_start is not None:
        on_start()
    counter.measuring = True
    began = time.perf_counter()
    await asyncio.sleep(config.duration)
    counter.measuring = False
    elapsed = time.perf_counter() - began
    if on_end is not None:
        on_end()
    for client in clients:
        client.running = False
        if client.transport is not None:
            client.transport.close()
    await asyncio.sleep(0.1)
    return WsLoadResult(
        messages=counter.messages,
        duration=elapsed,
        connected=len(clients),
        latencies_us=counter.latencies,
        errors=counter.errors,
    )


def run_ws_load(
    config: WsLoadConfig,
    *,
    on_start: Callable[[], object] | None = None,
    on_end: Callable[[], object] | None = None,
) -> WsLoadResult:
    """Run the load in this process (uvloop when installed) and return what it saw."""
    try:
        uvloop: Any = importlib.import_module("uvloop")
        factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    except ImportError:
        factory = asyncio.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(_run(config, on_start, on_end))
