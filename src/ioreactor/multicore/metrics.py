"""Prometheus metrics of a multi-process server: counted per worker, added up at a scrape.

Data flow::

    worker: connections (TcpServer.stats), loop lag (a timer), HTTP (HTTP_METRICS),
            PROXY header timeouts --every FLUSH_INTERVAL and at exit--> its MetricsSlot:
            shared memory the supervisor mapped before the fork (one per process)
    supervisor: a worker exits --> its last values join ``retired`` (counters are kept)
    GET /metrics on --metrics-listen (the supervisor's own loop, never the public
    listener) --> retired + every live slot + the supervisor's own (restarts by cause,
    workers) --> prometheus_client's text format

prometheus_client's multiprocess mode writes a memory-mapped file on every increment
(a lock and a struct pack each: microseconds per request); here a request costs plain
integer additions in its own process, and a worker copies its numbers into its slot a
few times a second. A scrape sees them at most FLUSH_INTERVAL old; a worker killed
with SIGKILL loses what it counted since its last copy. prometheus_client is imported
only here, only when ``--metrics-listen`` is given (the ``metrics`` extra).
"""

from __future__ import annotations

import array
import bisect
import importlib.util
import mmap
import struct
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from ioreactor.http.app import App
from ioreactor.http.metrics import HTTP_METRICS, Series
from ioreactor.http.metrics import SERIES as HTTP_SERIES
from ioreactor.http.response import Response
from ioreactor.http.server import HttpServer
from ioreactor.net.proxy_protocol import ProxyProtocolHandler

if TYPE_CHECKING:
    from ioreactor.loop.event_loop import EventLoop
    from ioreactor.net.address import Address
    from ioreactor.net.server import TcpServer

#: Seconds between two copies of a worker's numbers into its slot.
FLUSH_INTERVAL = 0.25
#: Seconds between two samples of the loop's lag (how late a timer runs).
LAG_INTERVAL = 0.1
LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
#: The text format Prometheus scrapes.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

DOCS = {
    "ioreactor_connections_accepted": "Connections accepted (or handed over by fd passing).",
    "ioreactor_connections_closed": "Connections closed.",
    "ioreactor_connections_open": "Connections open now.",
    "ioreactor_connections_shed": "Connections closed at once for lack of fds (EMFILE).",
    "ioreactor_loop_lag_seconds": "How late a loop ran a timer (event loop lag).",
    "ioreactor_http_requests": "HTTP requests answered, by method and status class.",
    "ioreactor_http_request_duration_seconds": "From the read of a whole request to its answer.",
    "ioreactor_http_request_body_bytes": "Request body bytes received.",
    "ioreactor_http_response_body_bytes": "Response body bytes of known size sent.",
    "ioreactor_http_backpressure_pauses": "Times a connection stopped reading: output full.",
    "ioreactor_http_timeouts": "Connections timed out, by kind.",
    "ioreactor_worker_restarts": "Worker processes started in place of another, by cause.",
    "ioreactor_workers": "Worker processes serving now.",
}


def _worker_series() -> tuple[Series, ...]:
    out = [
        Series("ioreactor_connections_accepted", (), "counter"),
        Series("ioreactor_connections_closed", (), "counter"),
        Series("ioreactor_connections_open", (), "gauge"),
        Series("ioreactor_connections_shed", (), "counter"),
    ]
    for bound in (*LAG_BUCKETS, float("inf")):
        le = "+Inf" if bound == float("inf") else repr(bound)
        out.append(Series("ioreactor_loop_lag_seconds", (("le", le),), "bucket"))
    out.append(Series("ioreactor_loop_lag_seconds", (), "sum"))
    out.append(Series("ioreactor_loop_lag_seconds", (), "count"))
    return tuple(out)


#: Every number a worker publishes, in order: its own, then its HTTP layer's.
SERIES = _worker_series() + HTTP_SERIES
_HANDSHAKE = len(SERIES) - 1  # ioreactor_http_timeouts{kind="handshake"}, the last one
_FRAME = struct.Struct("=Q")


class MetricsSlot:
    """One worker process's numbers in memory shared with the supervisor.

    A sequence number guards each copy (odd while writing): a reader that sees it odd
    or changed reads again, so a scrape never adds up half of one copy.
    """

    def __init__(self, size: int = len(SERIES)) -> None:
        self.size = size
        self.memory = mmap.mmap(-1, _FRAME.size + 8 * size, flags=mmap.MAP_SHARED)
        self._sequence = 0

    def write(self, values: Sequence[float]) -> None:
        self._sequence += 1
        _FRAME.pack_into(self.memory, 0, self._sequence)  # odd: being written
        self.memory[_FRAME.size :] = array.array("d", values).tobytes()
        self._sequence += 1
        _FRAME.pack_into(self.memory, 0, self._sequence)

    def read(self) -> list[float]:
        for _ in range(100):
            (before,) = _FRAME.unpack_from(self.memory, 0)
            values = array.array("d", self.memory[_FRAME.size :])
            (after,) = _FRAME.unpack_from(self.memory, 0)
            if before == after and not before % 2:
                return values.tolist()
        return values.tolist()  # a writer stuck mid-copy: the numbers as they are

    def close(self) -> None:
        self.memory.close()


class WorkerMetrics:
    """A serving process's side: samples its loop's lag, copies its numbers to ``slot``."""

    def __init__(self, loop: EventLoop, server: TcpServer, slot: MetricsSlot) -> None:
        self.loop = loop
        self.server = server
        self.slot = slot
        self.lag_buckets = [0] * (len(LAG_BUCKETS) + 1)
        self.lag_sum = 0.0
        self._due = 0.0

    def start(self) -> None:
        self._due = self.loop.time() + LAG_INTERVAL
        self.loop.call_at(self._due, self._sample_lag)
        self.loop.call_every(FLUSH_INTERVAL, self.flush)

    def _sample_lag(self) -> None:
        now = self.loop.time()
        lag = max(0.0, now - self._due)
        self.lag_buckets[bisect.bisect_left(LAG_BUCKETS, lag)] += 1
        self.lag_sum += lag
        self._due = now + LAG_INTERVAL
        self.loop.call_at(self._due, self._sample_lag)

    def values(self) -> list[float]:
        stats = self.server.stats()
        out: list[float] = [stats.accepted, stats.closed, stats.open, stats.shed]
        out += [*self.lag_buckets, self.lag_sum, float(sum(self.lag_buckets))]
        out += HTTP_METRICS.values()
        handler = self.server.handler
        if isinstance(handler, ProxyProtocolHandler):
            out[_HANDSHAKE] += handler.stats.timeouts
        return out

    def flush(self) -> None:
        self.slot.write(self.values())


class MetricsBook:
    """The supervisor's side: live slots, what dead workers counted, its own numbers."""

    def __init__(self) -> None:
        self.live: dict[int, MetricsSlot] = {}
        #: Counters of the processes that are gone (gauges are not kept).
        self.retired = [0.0] * len(SERIES)
        self._gauges = [i for i, s in enumerate(SERIES) if s.kind == "gauge"]

    def new_slot(self) -> MetricsSlot:
        return MetricsSlot()

    def attach(self, pid: int, slot: MetricsSlot) -> None:
        self.live[pid] = slot

    def retire(self, pid: int) -> None:
        """Worker ``pid`` exited: its last numbers stay counted."""
        slot = self.live.pop(pid, None)
        if slot is None:
            return
        values = slot.read()
        for i in self._gauges:
            values[i] = 0.0
        self.retired = [a + b for a, b in zip(self.retired, values, strict=True)]
        slot.close()

    def totals(self) -> list[float]:
        total = list(self.retired)
        for slot in self.live.values():
            total = [a + b for a, b in zip(total, slot.read(), strict=True)]
        return total

    def close(self) -> None:
        for slot in self.live.values():
            slot.close()
        self.live.clear()


def exposition(
    values: Sequence[float],
    extra: Iterable[tuple[Series, float]] = (),
) -> bytes:
    """The Prometheus text format of ``values`` (in :data:`SERIES` order) and ``extra``."""
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.core import (
        CounterMetricFamily,
        GaugeMetricFamily,
        HistogramMetricFamily,
    )

    families: dict[str, Any] = {}
    histograms: dict[str, dict[str, Any]] = {}
    for series, value in [*zip(SERIES, values, strict=True), *extra]:
        name, labels, kind = series
        if kind in ("bucket", "sum", "count"):
            parts = histograms.setdefault(name, {"buckets": [], "sum": 0.0})
            if kind == "bucket":
                parts["buckets"].append((dict(labels)["le"], value))
            elif kind == "sum":
                parts["sum"] = value
            continue
        family = families.get(name)
        if family is None:
            make = CounterMetricFamily if kind == "counter" else GaugeMetricFamily
            family = families[name] = make(name, DOCS[name], labels=[n for n, _ in labels])
        family.add_metric([v for _, v in labels], value)
    for name, parts in histograms.items():
        cumulative, running = [], 0.0
        for le, count in parts["buckets"]:
            running += count
            cumulative.append((le, running))
        family = HistogramMetricFamily(name, DOCS[name])
        family.add_metric([], cumulative, parts["sum"])
        families[name] = family

    class _Collector:
        def collect(self) -> Iterator[Any]:
            yield from families.values()

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector())
    data: bytes = generate_latest(registry)
    return data


def check_available() -> None:
    """Raise ImportError now (not at the first scrape) when prometheus_client is missing.

    Found, not imported: the first scrape imports it, in the process that serves
    /metrics (a serving process that imports it at start holds its thousands of objects,
    which every full garbage collection then walks).
    """
    if importlib.util.find_spec("prometheus_client") is None:
        raise ImportError(
            "--metrics-listen needs prometheus_client: pip install 'ioreactor[metrics]'"
        )


def serve_metrics(loop: EventLoop, address: Address, collect: Callable[[], bytes]) -> HttpServer:
    """An HTTP server on ``loop`` answering ``GET /metrics`` with ``collect()``."""
    app = App()

    def metrics(request: object) -> Response:
        return Response(collect(), content_type=CONTENT_TYPE)

    app.add_route("/metrics", metrics)
    return HttpServer(loop, address, app).start()
