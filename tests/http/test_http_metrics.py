"""The HTTP counters of one serving process (``--metrics-listen``): a real server on
loopback wired as ``ioreactor serve`` wires it, real clients, and every number of
``HTTP_METRICS.values()`` checked against what the clients sent and received -- on the
compiled build (C counters) and the pure one alike."""

from __future__ import annotations

import bisect
import http.client
import socket
import time
from collections.abc import Iterator

import pytest

from ioreactor.http.app import App
from ioreactor.http.app_loader import ServeOptions
from ioreactor.http.dispatch import AppDispatcher
from ioreactor.http.echo_app import build_echo_app
from ioreactor.http.limits import Limits
from ioreactor.http.metrics import (
    DURATION_BUCKETS,
    HTTP_METRICS,
    METHODS,
    SERIES,
    STATUS_CLASSES,
    HttpMetrics,
    MeteredHttpHandler,
    ObservingDispatcher,
)
from ioreactor.http.request import Request
from ioreactor.http.response import Response
from ioreactor.net.server import TcpServer
from ioreactor.testing import LoopThread

TIMEOUT = 10.0
DURATION = "ioreactor_http_request_duration_seconds"
#: A text answer whose UTF-8 body is longer than its characters.
ACCENTED = "déjà vu ✓"


def _app() -> App:
    app = build_echo_app()  # GET / (text), POST /echo (a Response), 404, 405...
    app.add_route("/accented", lambda request: ACCENTED)
    app.add_route("/pool", lambda request: "from the pool", blocking=True)
    app.add_route("/pool-bytes", lambda request: b"0123456789", blocking=True)

    def fails(request: Request) -> str:
        raise RuntimeError("a handler that fails: 500")

    app.add_route("/fails", fails)
    app.add_route("/created", lambda request: Response(b"made", 201), ("PUT",))
    return app


@pytest.fixture
def server() -> Iterator[int]:
    """The echo app (and a few routes more) served with metrics on, as ``serve`` does."""
    handler = ServeOptions(Limits(), metrics=True).handler(AppDispatcher(_app()))
    assert isinstance(handler, MeteredHttpHandler)
    assert isinstance(handler.dispatcher, ObservingDispatcher)
    with LoopThread(name="metrics-test") as lt:
        tcp = TcpServer(lt.loop, ("127.0.0.1", 0), handler)
        lt.call(tcp.start)
        try:
            yield tcp.port
        finally:
            lt.call(tcp.close)
            handler.close()


def _slot(method: str, status: int) -> int:
    """Where ``ioreactor_http_requests{method, status class}`` is in the values."""
    return METHODS.index(method) * len(STATUS_CLASSES) + status // 100 - 1


def _index(name: str, kind: str = "counter") -> int:
    """Where the unlabelled number ``name`` (of ``kind``) is in the values."""
    return next(
        i for i, s in enumerate(SERIES) if s.name == name and s.kind == kind and not s.labels
    )


def test_every_answer_is_counted_by_method_status_duration_and_bytes(server: int) -> None:
    before = HTTP_METRICS.values()
    started = time.monotonic()
    conn = http.client.HTTPConnection("127.0.0.1", server, timeout=TIMEOUT)
    expected = [0] * len(before)
    request_bytes = response_bytes = answered = 0

    def exchange(method: str, path: str, *parts: bytes) -> None:
        """One request (a body of several ``parts``: chunked) and its whole answer."""
        nonlocal request_bytes, response_bytes, answered
        if len(parts) > 1:
            conn.request(method, path, body=iter(parts), encode_chunked=True)
        else:
            conn.request(method, path, body=parts[0] if parts else None)
        reply = conn.getresponse()
        data = reply.read()
        counted = method if method in METHODS else "other"
        expected[_slot(counted, reply.status)] += 1
        answered += 1
        request_bytes += sum(map(len, parts))
        response_bytes += len(data)

    for _ in range(20):
        exchange("GET", "/")  # the inline text answer
    exchange("HEAD", "/")  # a text answer without a body
    exchange("GET", "/accented")  # its bytes are UTF-8 ones
    exchange("POST", "/echo", b"x" * 300)  # a Response
    exchange("POST", "/echo", b"a" * 70, b"b" * 30)  # chunked: body() calls, then end()
    exchange("PUT", "/created", b"new")  # 201
    exchange("GET", "/nope")  # 404
    exchange("DELETE", "/")  # 405
    exchange("OPTIONS", "/")
    exchange("PURGE", "/")  # a method counted as other
    exchange("GET", "/fails")  # 500
    exchange("GET", "/pool")  # answered later (the pool): the observer counts it
    exchange("GET", "/pool-bytes")
    conn.close()
    bad = socket.create_connection(("127.0.0.1", server), timeout=TIMEOUT)
    bad.sendall(b"NOT HTTP\r\n\r\n")  # a protocol error: the server's own 400
    reply = bad.recv(65536)
    assert reply.startswith(b"HTTP/1.1 400 ")
    bad.close()
    expected[_slot("other", 400)] += 1
    answered += 1
    took = time.monotonic() - started

    got = [a - b for a, b in zip(HTTP_METRICS.values(), before, strict=True)]
    requests = len(METHODS) * len(STATUS_CLASSES)
    assert got[:requests] == expected[:requests]
    buckets = got[requests : requests + len(DURATION_BUCKETS) + 1]
    # Every answer of the application has a duration (the server's own 400: none).
    assert sum(buckets) == got[_index(DURATION, "count")] == answered - 1
    assert 0 < got[_index(DURATION, "sum")] < took * answered
    assert got[_index("ioreactor_http_request_body_bytes")] == request_bytes == 403
    # Every body the clients read, byte for byte (a response to HEAD has none).
    assert got[_index("ioreactor_http_response_body_bytes")] == response_bytes


def test_durations_land_in_the_bucket_of_their_upper_bound() -> None:
    """Prometheus' ``le``: a duration equal to a bound counts in that bound's bucket."""
    metrics = HttpMetrics()
    durations = [0.0, 1e-9, *DURATION_BUCKETS, 10.000001, 3600.0]
    durations += [b * 1.0000001 for b in DURATION_BUCKETS]
    durations += [b * 0.9999999 for b in DURATION_BUCKETS]
    for seconds in durations:
        metrics.record_status("GET", 200, 5, seconds)
    expected = [0] * (len(DURATION_BUCKETS) + 1)
    for seconds in durations:
        expected[bisect.bisect_left(DURATION_BUCKETS, seconds)] += 1
    values = metrics.values()
    first = len(METHODS) * len(STATUS_CLASSES)
    assert values[first : first + len(expected)] == expected
    assert values[_index(DURATION, "sum")] == pytest.approx(sum(durations))
    assert values[_index(DURATION, "count")] == len(durations)
    assert values[_slot("GET", 200)] == metrics.served() == len(durations)
    assert values[_index("ioreactor_http_response_body_bytes")] == 5 * len(durations)
