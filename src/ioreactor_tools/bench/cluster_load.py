"""Steady keep-alive HTTP load that accounts for every request: the cluster test's client.

``python -m ioreactor_tools.bench.cluster_load http://10.200.0.2:80 --rate 300 --conns 6
--duration 8 --out load.json`` (run inside the client's namespace with ``ip netns exec``).

Data flow::

    slot i of --conns: its k-th request is due at start + (i / conns + k) * conns / rate
        due -> (connect first when the slot has no connection) -> one request in flight
        requests alternate GET --get-path and POST --post-path (a body unique to the
        request, 64 bytes by default, that must come back byte for byte)
        response (httptools) | connect failure | connection closed | no answer in time
        -> Record(method, sent, done, outcome) -> the JSON file and the summary line

Every request the schedule makes is counted, once: ``ok`` (2xx and, for POST, the body
echoed), or the reason it failed: ``connect:ECONNREFUSED`` (the request could not even
be sent), ``closed:ECONNRESET`` / ``closed:eof`` (the connection ended with the request
in flight), ``timeout`` (no complete answer within ``--timeout``), ``status:502``,
``body`` (the echo differs), ``parse``. A slot whose connection failed opens a new one
for its next request, so the load carries on through faults. A late answer makes the
next request of its slot go at once (one in flight per connection: the schedule stays
steady without piling requests onto a slow server).

Times are CLOCK_MONOTONIC seconds, the same clock in every network namespace: a test
that kills a server at ``time.monotonic() == t`` can ask which requests were in flight
then. The first line on stdout is ``start <t>``, written when the first request is due.
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import time
import urllib.parse
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import httptools

from ioreactor.loop.event_loop import EventLoop
from ioreactor.net.client import TcpClient
from ioreactor.net.handlers import Handler
from ioreactor_tools.bench.tcp_load import errno_kind

if TYPE_CHECKING:
    from ioreactor.loop.timers import TimerHandle
    from ioreactor.net.buffer import Buffer
    from ioreactor.net.connection import TcpConnection

#: Defaults: total requests per second, connections, seconds of load, POST body bytes.
RATE = 200.0
CONNS = 4
DURATION = 5.0
BODY_SIZE = 64
#: Seconds a connect, and a whole request (connect included), may take before it fails.
CONNECT_TIMEOUT = 3.0
REQUEST_TIMEOUT = 5.0
OK = "ok"


@dataclass(frozen=True)
class ClusterLoadConfig:
    """Where to send, how fast, for how long."""

    host: str
    port: int
    rate: float = RATE
    conns: int = CONNS
    duration: float = DURATION
    get_path: str = "/"
    post_path: str = "/echo"
    body_size: int = BODY_SIZE
    connect_timeout: float = CONNECT_TIMEOUT
    request_timeout: float = REQUEST_TIMEOUT

    def __post_init__(self) -> None:
        if self.conns < 1 or self.rate <= 0 or self.duration <= 0:
            raise ValueError("conns must be >= 1, rate and duration > 0")
        if self.body_size < 24:
            raise ValueError("body_size must be >= 24 (room for the request's own id)")
        if not 0 < self.connect_timeout <= self.request_timeout:
            raise ValueError("need 0 < connect_timeout <= request_timeout")

    @property
    def interval(self) -> float:
        """Seconds between two requests of one slot."""
        return self.conns / self.rate


class Record(NamedTuple):
    """One request: its method, when it was due (sent) and ended, and how."""

    method: str
    sent: float
    done: float
    outcome: str

    @property
    def ok(self) -> bool:
        return self.outcome == OK


@dataclass
class ClusterLoadResult:
    """Every request of a run, in the order they ended."""

    config: ClusterLoadConfig
    start: float
    end: float
    records: list[Record] = field(default_factory=list)

    def select(
        self, method: str | None = None, sent_after: float = -1.0, sent_before: float = 1e18
    ) -> list[Record]:
        return [
            r
            for r in self.records
            if (method is None or r.method == method) and sent_after <= r.sent < sent_before
        ]

    def failed(self, method: str | None = None) -> list[Record]:
        return [r for r in self.select(method) if not r.ok]

    def in_flight_at(self, moment: float) -> list[Record]:
        """The requests sent before ``moment`` and not finished by then."""
        return [r for r in self.records if r.sent <= moment < r.done]

    def outcomes(self, records: Iterable[Record] | None = None) -> dict[str, int]:
        counts = collections.Counter(
            r.outcome for r in (self.records if records is None else records)
        )
        return dict(sorted(counts.items()))

    def summary(self) -> str:
        total = len(self.records)
        failed = self.failed()
        window = self.end - self.start
        kinds = ", ".join(f"{k} {v}" for k, v in self.outcomes(failed).items()) or "none"
        return (
            f"{total:,} requests in {window:.2f} s ({total / window:,.0f}/s): "
            f"{total - len(failed):,} ok, {len(failed):,} failed ({kinds})"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "config": asdict(self.config),
            "start": self.start,
            "end": self.end,
            "records": [list(r) for r in self.records],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ClusterLoadResult:
        return cls(
            config=ClusterLoadConfig(**data["config"]),
            start=data["start"],
            end=data["end"],
            records=[Record(*r) for r in data["records"]],
        )

    @classmethod
    def load(cls, path: Path) -> ClusterLoadResult:
        return cls.from_json(json.loads(path.read_text()))


class _Slot(Handler):
    """One connection of the load: its schedule, its connection, its request in flight.
    A handler per slot (a handful of them), so the callbacks know their slot."""

    def __init__(self, load: ClusterLoad, index: int) -> None:
        self.load = load
        self.index = index
        self.client = TcpClient(
            load.loop,
            (load.config.host, load.config.port),
            self,
            retry=False,
            timeout=load.config.connect_timeout,
            on_connect_failed=self._connect_failed,
        )
        self.conn: TcpConnection | None = None
        self.connecting = False
        self.seq = 0  # requests made by this slot
        self.due = 0.0
        self.method = ""  # of the request in flight ("" when none)
        self.sent = 0.0
        self.expected = b""  # the POST body that must come back
        self.body = bytearray()
        self.parser = httptools.HttpResponseParser(self)
        self.deadline: TimerHandle | None = None
        self.timer: TimerHandle | None = None

    # -- the schedule ---------------------------------------------------------------------

    def schedule(self, due: float) -> None:
        self.due = due
        if due >= self.load.stop_at:
            self.load.slot_finished()
            return
        self.timer = self.load.loop.call_at(due, self._fire)

    def _fire(self) -> None:
        self.timer = None
        seq = self.seq
        self.seq += 1
        self.method = "GET" if seq % 2 == 0 else "POST"
        self.sent = time.monotonic()
        self.deadline = self.load.loop.call_later(self.load.config.request_timeout, self._timed_out)
        if self.conn is not None and self.conn.connected:
            self._send()
        elif not self.connecting:
            self.connecting = True
            self.client.connect()

    def _send(self) -> None:
        assert self.conn is not None
        config = self.load.config
        host = f"{config.host}:{config.port}"
        if self.method == "GET":
            self.expected = b""
            head = f"GET {config.get_path} HTTP/1.1\r\nHost: {host}\r\n\r\n"
            self.conn.send(head.encode())
            return
        tag = f"{self.index}:{self.seq}:".encode()
        self.expected = tag + b"x" * (config.body_size - len(tag))
        head = (
            f"POST {config.post_path} HTTP/1.1\r\nHost: {host}\r\n"
            f"Content-Type: application/octet-stream\r\nContent-Length: {config.body_size}\r\n\r\n"
        )
        self.conn.send(head.encode() + self.expected)

    def _end(self, outcome: str) -> None:
        """The request in flight ended: record it and schedule the next."""
        if self.deadline is not None:
            self.deadline.cancel()
            self.deadline = None
        self.load.records.append(Record(self.method, self.sent, time.monotonic(), outcome))
        self.method = ""
        self.body.clear()
        interval = self.load.config.interval
        self.schedule(max(self.due + interval, time.monotonic()))

    def _timed_out(self) -> None:
        self.deadline = None
        if self.method:
            conn = self.conn
            self._forget_connection()
            if conn is not None:
                conn.force_close()  # its stream is out of step now
            self.client.connector.stop()
            self.connecting = False
            self._end("timeout")

    def _forget_connection(self) -> None:
        if self.conn is not None:
            self.conn.context = None
        self.conn = None
        self.parser = httptools.HttpResponseParser(self)

    # -- the connection (Handler callbacks) -----------------------------------------------

    def _connect_failed(self, exc: OSError) -> None:
        self.connecting = False
        if self.method:
            self._end(errno_kind("connect", exc))

    def on_connection(self, conn: TcpConnection) -> None:
        self.connecting = False
        self.conn = conn
        conn.context = self
        if self.method:
            self._send()

    def on_message(self, conn: TcpConnection, buffer: Buffer) -> None:
        if conn.context is not self:
            buffer.retrieve_all()
            return
        try:
            with buffer.peek() as data:
                self.parser.feed_data(data)
        except httptools.HttpParserError:
            buffer.retrieve_all()
            self._drop(conn, "parse")
            return
        buffer.retrieve_all()

    def on_close(self, conn: TcpConnection) -> None:
        if conn.context is not self:
            return  # dropped by us already
        self._forget_connection()
        if self.method:
            self._end(errno_kind("closed", conn.error))

    def _drop(self, conn: TcpConnection, outcome: str) -> None:
        self._forget_connection()
        conn.force_close()
        if self.method:
            self._end(outcome)

    # -- httptools callbacks ----------------------------------------------------------------

    def on_body(self, body: bytes) -> None:
        self.body += body

    def on_message_complete(self) -> None:
        conn = self.conn
        assert conn is not None
        status = self.parser.get_status_code()
        keep_alive = self.parser.should_keep_alive()
        if not self.method:
            self._drop(conn, "unrequested")
            return
        if not 200 <= status < 300:
            outcome = f"status:{status}"
        elif self.method == "POST" and self.body != self.expected:
            outcome = "body"
        else:
            outcome = OK
        if not keep_alive:
            self._forget_connection()
            conn.close()
        self._end(outcome)


class ClusterLoad:
    """The whole load: ``config.conns`` slots on one loop, stopped when every slot's
    schedule passes ``start + duration`` and its last request has ended."""

    def __init__(self, config: ClusterLoadConfig) -> None:
        self.config = config
        self.loop = EventLoop(name="cluster-load")
        self.records: list[Record] = []
        self.slots = [_Slot(self, i) for i in range(config.conns)]
        self.start = 0.0
        self.stop_at = 0.0
        self.running = 0

    def run(self, announce: bool = False) -> ClusterLoadResult:
        self.start = time.monotonic() + 0.05
        self.stop_at = self.start + self.config.duration
        self.running = len(self.slots)
        if announce:
            print(f"start {self.start:.6f}", flush=True)
        interval = self.config.interval
        for slot in self.slots:
            slot.schedule(self.start + slot.index * interval / len(self.slots))
        try:
            if self.running:
                self.loop.run()
        finally:
            for slot in self.slots:
                slot.client.connector.stop()
                if slot.conn is not None:
                    slot.conn.force_close()
            self.loop.close()
        return ClusterLoadResult(self.config, self.start, time.monotonic(), self.records)

    def slot_finished(self) -> None:
        self.running -= 1
        if self.running == 0:
            self.loop.stop()


def run_cluster_load(config: ClusterLoadConfig, announce: bool = False) -> ClusterLoadResult:
    """Run the load of ``config`` in this process; every request's record."""
    return ClusterLoad(config).run(announce)


def parse_target(url: str) -> tuple[str, int]:
    """``http://HOST[:PORT]`` -> (host, port)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError(f"expected http://HOST[:PORT], got {url!r}")
    return parts.hostname, parts.port or 80


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url", help="http://HOST[:PORT] of the balancer (or a server)")
    parser.add_argument("--rate", type=float, default=RATE, help="requests per second, in all")
    parser.add_argument("--conns", type=int, default=CONNS, help="keep-alive connections")
    parser.add_argument("--duration", type=float, default=DURATION, help="seconds of load")
    parser.add_argument("--get-path", default="/")
    parser.add_argument("--post-path", default="/echo")
    parser.add_argument("--body-size", type=int, default=BODY_SIZE)
    parser.add_argument("--connect-timeout", type=float, default=CONNECT_TIMEOUT)
    parser.add_argument("--timeout", type=float, default=REQUEST_TIMEOUT, help="per request")
    parser.add_argument("--out", type=Path, default=None, help="write every request as JSON")
    args = parser.parse_args(argv)
    try:
        host, port = parse_target(args.url)
        config = ClusterLoadConfig(
            host=host,
            port=port,
            rate=args.rate,
            conns=args.conns,
            duration=args.duration,
            get_path=args.get_path,
            post_path=args.post_path,
            body_size=args.body_size,
            connect_timeout=args.connect_timeout,
            request_timeout=args.timeout,
        )
    except ValueError as exc:
        parser.error(str(exc))
    result = run_cluster_load(config, announce=True)
    if args.out is not None:
        args.out.write_text(json.dumps(result.to_json()))
    print(result.summary(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
