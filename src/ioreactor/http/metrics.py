"""The HTTP counters of one process: plain integers, kept only when asked for.

Data flow::

    request --CountingDispatcher (--max-requests alone): HTTP_METRICS.requests += 1
            --ObservingDispatcher (--metrics-listen): by method and status class, the
              duration histogram, body bytes (one call more per request)
    answer that comes later (pool, ASGI, WSGI) --ResponseQueue.fill--> MetricsObserver
    protocol error (400, 408, 413...) --ResponseQueue.refuse--> MetricsObserver
    timeouts (HttpProtocol.check_timeouts) --> MetricsObserver.timed_out(kind)
    output above the high water mark --MeteredHttpHandler.on_high_water_mark--> pauses
    HTTP_METRICS.values() --(multicore.metrics: a worker's shared slot, every 0.25 s)-->
        the supervisor adds every worker's up at a scrape

Nothing here runs unless ``ioreactor serve`` asked for it: without ``--metrics-listen``
and ``--max-requests`` the server's handler and dispatcher are the plain ones (zero
work per request). With metrics, a request costs a few integer additions and one clock
read in this process; nothing is shared per request (prometheus_client's
multiprocess mode writes a memory-mapped file on every increment). The compiled build
compiles this module (metrics.pxd): the dispatchers are C classes that call the inner
one in C, and the counters are C integers (callgrind, ``serve --workers 0``, keep-alive
``GET /``: about 550 instructions more per request than without metrics, of 16,317).

The series are fixed (methods outside :data:`METHODS` count as ``other``), so a
process's values are a flat list of numbers, :data:`SERIES` names them in order.
"""

from __future__ import annotations

import array
import functools
from collections.abc import MutableSequence
from typing import TYPE_CHECKING, NamedTuple

from ioreactor.http.dispatch import LATER, Dispatcher, WrappingDispatcher
from ioreactor.http.handler import HttpHandler
from ioreactor.http.response import describe

try:
    import cython
except ImportError:  # the pure build runs without Cython installed
    import ioreactor._cython as cython

if not cython.compiled:
    # The compiled build cimports the loop's C clock of the same name (loop/csysio.pxd).
    from bisect import bisect_left
    from time import monotonic

if TYPE_CHECKING:
    from ioreactor.http.errors import HttpError
    from ioreactor.http.protocol import HttpProtocol
    from ioreactor.http.request import Request
    from ioreactor.net.connection import TcpConnection

#: Methods counted by name; any other is ``other``.
METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "other")
STATUS_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx")
#: Upper bounds (seconds) of the request duration histogram's buckets (+Inf follows).
DURATION_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)  # fmt: skip
#: Why a connection was timed out: no whole head in time (408), a body that stalled
#: (408), an idle keep-alive connection (closed), a handshake before HTTP (a PROXY
#: header; TLS when it serves).
TIMEOUT_KINDS = ("header", "body", "keep-alive", "handshake")

_METHOD_INDEX = {m: i for i, m in enumerate(METHODS)}
_OTHER = len(METHODS) - 1
#: Where a 2xx answer to each method counts in ``HttpMetrics.responses`` (a text: 200).
_TEXT_SLOT = {m: i * len(STATUS_CLASSES) + 1 for i, m in enumerate(METHODS)}
_OTHER_TEXT_SLOT = _OTHER * len(STATUS_CLASSES) + 1
_HEAD_TEXT_SLOT = _TEXT_SLOT["HEAD"]
_FIRST_BOUND = DURATION_BUCKETS[0]
#: The bounds as C doubles, for the compiled build's search (:func:`_bucket`).
_BOUNDS = array.array("d", DURATION_BUCKETS)


class Series(NamedTuple):
    """One number of a process's values: a metric name, its labels, and its kind
    (``counter``; histogram parts are ``bucket`` (not cumulative), ``sum``, ``count``)."""

    name: str
    labels: tuple[tuple[str, str], ...]
    kind: str


def _series() -> tuple[Series, ...]:
    out = []
    for method in METHODS:
        for status in STATUS_CLASSES:
            labels = (("method", method), ("status", status))
            out.append(Series("ioreactor_http_requests", labels, "counter"))
    for bound in (*DURATION_BUCKETS, float("inf")):
        le = "+Inf" if bound == float("inf") else repr(bound)
        out.append(Series("ioreactor_http_request_duration_seconds", (("le", le),), "bucket"))
    out.append(Series("ioreactor_http_request_duration_seconds", (), "sum"))
    out.append(Series("ioreactor_http_request_duration_seconds", (), "count"))
    out.append(Series("ioreactor_http_request_body_bytes", (), "counter"))
    out.append(Series("ioreactor_http_response_body_bytes", (), "counter"))
    out.append(Series("ioreactor_http_backpressure_pauses", (), "counter"))
    for kind in TIMEOUT_KINDS:
        out.append(Series("ioreactor_http_timeouts", (("kind", kind),), "counter"))
    return tuple(out)


#: What each of :meth:`HttpMetrics.values` is, in order.
SERIES = _series()


def _zeros(n: int) -> MutableSequence[int]:
    """``n`` counters: C 64-bit integers in the compiled build (an array it indexes as
    a typed memoryview: no object per addition), a list in the pure one (the fastest
    to index there)."""
    if not cython.compiled:
        return [0] * n
    return array.array("q", bytes(8 * n))


def _listed(counters: MutableSequence[int]) -> list[int]:
    """The numbers of :func:`_zeros`' counters, as a list (read by index: the compiled
    build's are a typed memoryview)."""
    return [counters[i] for i in range(len(counters))]


def _bucket(seconds: float) -> int:
    """The duration histogram's bucket of ``seconds``: the first bound not below it
    (``bisect_left`` over :data:`DURATION_BUCKETS`: this C loop in the compiled build,
    bisect's C function in the pure one, below)."""
    low = 0
    high = len(_BOUNDS)
    while low < high:
        middle = (low + high) >> 1
        if _BOUNDS[middle] < seconds:
            low = middle + 1
        else:
            high = middle
    return low


if not cython.compiled:
    # No Python frame a search: bisect's own function (it returns the same index).
    _bucket = functools.partial(bisect_left, DURATION_BUCKETS)


def _text_size(text: str) -> int:
    """The size of a text answer's body: its UTF-8 encoding (one byte a character for
    the common ASCII text, found without encoding it)."""
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogateescape"))


class HttpMetrics:
    """This process's HTTP counters (one object per process: :data:`HTTP_METRICS`)."""

    __slots__ = (
        "backpressure_pauses",
        "buckets",
        "duration_sum",
        "request_body_bytes",
        "requests",
        "response_body_bytes",
        "responses",
        "started",
        "timeouts",
    )

    def __init__(self) -> None:
        #: Requests dispatched, counted by a :class:`CountingDispatcher` (--max-requests
        #: without metrics; with them, the responses are the count: :meth:`served`).
        self.requests = 0
        #: Answered requests by method and status class: index method * 5 + status
        #: // 100 - 1.
        self.responses = _zeros(len(METHODS) * len(STATUS_CLASSES))
        #: Requests by duration: index :func:`_bucket` (the last: above every bound).
        self.buckets = _zeros(len(DURATION_BUCKETS) + 1)
        self.duration_sum = 0.0
        self.request_body_bytes = 0
        self.response_body_bytes = 0
        self.backpressure_pauses = 0
        self.timeouts = dict.fromkeys(TIMEOUT_KINDS, 0)
        #: The loop's time at dispatch of the requests answered later, by id(request).
        self.started: dict[int, float] = {}

    def record(self, method: str, result: object, seconds: float) -> None:
        """One response: its method, the handler's result, the time it took."""
        if type(result) is str:
            self.record_status(method, 200, _text_size(result), seconds)
        else:
            status, size = describe(result)
            self.record_status(method, status, size, seconds)

    def record_status(self, method: str, status: int, size: int, seconds: float) -> None:
        """One response: its method, status, body size (-1: not known), the time it took."""
        cls = status // 100 - 1
        if 0 <= cls < len(STATUS_CLASSES):
            self.responses[_METHOD_INDEX.get(method, _OTHER) * 5 + cls] += 1
        self.buckets[0 if seconds <= _FIRST_BOUND else _bucket(seconds)] += 1
        self.duration_sum += seconds
        if size > 0 and method != "HEAD":  # (a response to HEAD has no body)
            self.response_body_bytes += size

    def refused(self, status: int) -> None:
        """A protocol error answered by the server (no request reached the application)."""
        cls = status // 100 - 1
        if 0 <= cls < len(STATUS_CLASSES):
            self.responses[_OTHER * 5 + cls] += 1

    def served(self) -> int:
        """Requests served by this process so far (for ``--max-requests``)."""
        return self.requests + sum(_listed(self.responses))

    def values(self) -> list[float]:
        """Every number, in the order of :data:`SERIES`."""
        buckets = _listed(self.buckets)
        out: list[float] = [*_listed(self.responses), *buckets]
        out += [self.duration_sum, float(sum(buckets))]
        out += [self.request_body_bytes, self.response_body_bytes, self.backpressure_pauses]
        out += [self.timeouts[kind] for kind in TIMEOUT_KINDS]
        return out


#: The counters of this process (each worker has its own after the fork).
HTTP_METRICS = HttpMetrics()


class CountingDispatcher(WrappingDispatcher):
    """Counts each request (``--max-requests``), then runs ``inner``."""

    __slots__ = ("metrics",)

    def __init__(self, inner: Dispatcher, metrics: HttpMetrics = HTTP_METRICS) -> None:
        super().__init__(inner)
        self.metrics = metrics

    def request(self, protocol: HttpProtocol, request: Request) -> object:
        self.metrics.requests += 1
        return self.inner.request(protocol, request)


class ObservingDispatcher(WrappingDispatcher):
    """Records each request's response and duration, around ``inner``.

    The common answer -- text returned at once -- is recorded inline; everything else
    goes through :meth:`HttpMetrics.record`. A duration runs from the loop's cached
    time of the read (``loop.now``, no clock read) to the answer: one clock read a
    request, and no count of its own (the answers are the count). In the compiled build
    this is a compiled class over C counters: the clock read, the bucket search and the
    additions are C; nothing is shared or allocated per request.
    """

    __slots__ = ("metrics",)

    def __init__(self, inner: Dispatcher, metrics: HttpMetrics = HTTP_METRICS) -> None:
        super().__init__(inner)
        self.metrics = metrics

    def request(self, protocol: HttpProtocol, request: Request) -> object:
        answer = self.inner.request(protocol, request)
        # From the loop iteration that read the request (the loop's cached clock) to
        # its answer: handler time, and the time the requests before it in the
        # iteration took. (``owner``: the protocol, typed in metrics.pxd.)
        owner = protocol
        start = owner.loop.now
        seconds = monotonic() - start
        metrics = self.metrics
        if type(answer) is str:
            slot = _TEXT_SLOT.get(request.method, _OTHER_TEXT_SLOT)
            metrics.responses[slot] += 1
            # Most answers on the loop take less than the first bound: no search then.
            metrics.buckets[0 if seconds <= _FIRST_BOUND else _bucket(seconds)] += 1
            metrics.duration_sum += seconds
            if slot != _HEAD_TEXT_SLOT:  # (a response to HEAD has no body)
                text = answer  # (a str: typed in metrics.pxd)
                # _text_size(), inlined for the pure build (a Python call less).
                metrics.response_body_bytes += (
                    len(text) if text.isascii() else len(text.encode("utf-8", "surrogateescape"))
                )
            return answer
        body = request.body
        if body:
            metrics.request_body_bytes += len(body)
        if answer is LATER:
            if body is not None:  # answered later (else: its body is coming)
                metrics.started[id(request)] = start
        else:
            metrics.record(request.method, answer, seconds)
        return answer

    def body(self, protocol: HttpProtocol, chunk: bytes) -> None:
        self.metrics.request_body_bytes += len(chunk)
        self.inner.body(protocol, chunk)

    def end(self, protocol: HttpProtocol, request: Request) -> object:
        answer = self.inner.end(protocol, request)
        owner = protocol
        start = owner.loop.now
        if answer is LATER:
            self.metrics.started[id(request)] = start
        else:
            self.metrics.record(request.method, answer, monotonic() - start)
        return answer


class MetricsObserver:
    """The response queue's observer for metrics: answers that came later (the
    dispatcher counted the others), protocol errors, timeouts."""

    __slots__ = ("metrics",)

    #: The queue reports every response only to an observer that wants them all (an
    #: access log); this one needs only answers filled later and refusals.
    every = False

    def __init__(self, metrics: HttpMetrics = HTTP_METRICS) -> None:
        self.metrics = metrics

    def responded(self, request: Request, result: object) -> object:
        start = self.metrics.started.pop(id(request), None)
        if start is not None:
            self.metrics.record(request.method, result, monotonic() - start)
        return result

    def sent(self, request: Request, status: int, size: int) -> None:
        start = self.metrics.started.pop(id(request), None)
        if start is not None:
            self.metrics.record_status(request.method, status, size, monotonic() - start)

    def abandoned(self, request: Request) -> None:
        """A reserved answer that will never be sent (the connection closed)."""
        self.metrics.started.pop(id(request), None)

    def refused(self, peer: object, error: HttpError) -> None:
        self.metrics.refused(error.status)

    def timed_out(self, kind: str) -> None:
        self.metrics.timeouts[kind] += 1


class MeteredHttpHandler(HttpHandler):
    """:class:`HttpHandler` that also counts back-pressure pauses (the connection's
    output reached its high water mark, so reading stopped)."""

    def on_high_water_mark(self, conn: TcpConnection, size: int) -> None:
        HTTP_METRICS.backpressure_pauses += 1
