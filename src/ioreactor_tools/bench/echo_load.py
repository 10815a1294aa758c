"""The echo load generator (``ioreactor echo-client``), built on ioreactor's own loop.

Each connection plays ping-pong: it sends a message of ``size`` random bytes (``pipeline``
of them in flight), checks every byte of the echo against what it sent, records the
round-trip latency and sends the next one. Consecutive messages on a connection differ,
so a lost, repeated, reordered or corrupted byte is an ``integrity`` error (the
connection is then closed: its stream is out of step).

The phases of a run (ramp-up, warm-up, the measured window bracketed by
``on_start``/``on_end``, drain) and ``procs > 1`` (the connections split over that many
processes, their results merged) are :mod:`ioreactor_tools.bench.tcp_load`'s.
"""

from __future__ import annotations

import collections
import random
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import ClassVar, Self

from ioreactor.net.buffer import Buffer
from ioreactor.net.connection import TcpConnection
from ioreactor_tools.bench.tcp_load import CONNECT_TIMEOUT as CONNECT_TIMEOUT
from ioreactor_tools.bench.tcp_load import (
    DRAIN,
    MEASURE,
    WARMUP,
    ProgressView,
    TcpLoad,
    TcpLoadConfig,
    TcpLoadResult,
    run_load,
)
from ioreactor_tools.bench.tcp_load import RAMP_BATCH as RAMP_BATCH
from ioreactor_tools.bench.tcp_load import split_conns as split_conns

# CONNECT_TIMEOUT, RAMP_BATCH and split_conns are re-exported (``as``): the echo-client
# CLI and the tests take them from here.

#: Distinct random payloads, together at most PAYLOAD_POOL_BYTES.
DISTINCT_PAYLOADS = 16
PAYLOAD_POOL_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class EchoLoadConfig(TcpLoadConfig):
    size: int = 1024
    seed: int | None = None

    POSITIVE: ClassVar[tuple[str, ...]] = (*TcpLoadConfig.POSITIVE, "size")

    def for_process(self, index: int, conns: int) -> Self:
        """Process ``index`` seeds its payloads with ``seed + index``: no two alike."""
        share = super().for_process(index, conns)
        return share if self.seed is None else replace(share, seed=self.seed + index)


@dataclass(kw_only=True)
class EchoLoadResult(TcpLoadResult):
    """What the load saw; ``messages`` were sent in the window and echoed intact."""

    messages: int
    bytes: int

    NOUN: ClassVar[str] = "messages"
    RATE_UNIT: ClassVar[str] = "msg/s"
    QUANTILES: ClassVar[tuple[tuple[str, float], ...]] = (
        ("p50", 0.5),
        ("p99", 0.99),
        ("p99.9", 0.999),
    )

    messages_per_s = TcpLoadResult.rate


class _ConnState:
    """Per-connection ping-pong state: the messages in flight and how far the head is."""

    __slots__ = ("inflight", "next_payload", "pos")

    def __init__(self, first_payload: int) -> None:
        #: (payload, perf_counter_ns at send) per message in flight, oldest first.
        self.inflight: collections.deque[tuple[bytes, int]] = collections.deque()
        self.next_payload = first_payload
        #: Bytes of the oldest message in flight already received and checked.
        self.pos = 0


class EchoLoad(TcpLoad[EchoLoadConfig, EchoLoadResult]):
    """One process's share of the echo load: ``config.conns`` connections on one loop."""

    def __init__(self, config: EchoLoadConfig) -> None:
        super().__init__(config, name="echo-load")
        rng = random.Random(config.seed)
        count = max(2, min(DISTINCT_PAYLOADS, PAYLOAD_POOL_BYTES // config.size))
        self.payloads = [rng.randbytes(config.size) for _ in range(count)]
        self.size = config.size

    def _new_context(self, conn: TcpConnection) -> _ConnState:
        return _ConnState(len(self.live) % len(self.payloads))

    def _start_sending(self, conn: TcpConnection) -> None:
        for _ in range(self.config.pipeline):
            self._send_next(conn)

    def _in_flight(self, context: _ConnState) -> int:
        return len(context.inflight)

    def _result(self) -> EchoLoadResult:
        return EchoLoadResult(
            conns=self.config.conns,
            connected=self.connected,
            messages=self.exchanges,
            bytes=self.exchanges * self.size,
            duration=self.window,
            latency=self.latency,
            errors=dict(self.errors),
        )

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
                self._drop(conn, buffer, "integrity")
                return
            payload, sent_ns = inflight[0]
            pos = state.pos
            take = min(n, size - pos)
            expected = payload if take == size else payload[pos : pos + take]
            if buffer.read(take) != expected:
                self._drop(conn, buffer, "integrity")
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
                    self.exchanges += 1
            if phase in (MEASURE, WARMUP):
                self._send_next(conn)
            elif not self.outstanding:
                self.loop.stop()  # drained


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
    view = ProgressView(config.duration, "echo load", "msg") if progress else None
    return run_load(EchoLoad, config, on_start=on_start, on_end=on_end, view=view)
