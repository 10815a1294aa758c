"""Hypothesis fuzzes the request path: random bytes and mutated valid requests, split at
random points. No exception may escape (nothing logged as an error), everything sent
back is a response, and once the client has sent all it will, the connection ends."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterator

import pytest
from http_support import Harness
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ioreactor.http.app import App
from ioreactor.http.echo_app import build_echo_app
from ioreactor.http.limits import Limits
from ioreactor.http.request import Request
from ioreactor.loop.event_loop import EventLoop
from support.http import parse_responses

LIMITS = Limits(max_request_line=512, max_header_bytes=2048, max_headers=20, max_body=4096)

VALID = [
    b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET /echo?x=1 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nContent-Type: t/x\r\n\r\nhello",
    b"PUT /echo HTTP/1.1\r\nHost: t\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n0\r\nT: 1\r\n\r\n",
    b"POST /echo HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nhi",
    b"HEAD /healthz HTTP/1.1\r\nHost: t\r\n\r\n",
    b"GET /missing HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    b"DELETE /echo HTTP/1.1\r\nHost: t\r\n\r\n",
    b"GET /p/%41%ff/b?q=%20&r HTTP/1.1\r\nHost: t\r\nX-A: 1\r\nX-a: 2\r\n\r\n",
    b"GET http://host/p/abs HTTP/1.1\r\nHost: t\r\n\r\n",
]


def fuzz_app() -> App:
    """The echo app plus a route that echoes decoded path and query parts."""
    app = build_echo_app()

    @app.route("/p/{rest:path}")
    def parts(request: Request) -> str:
        return f"{request.params['rest']}|{request.query_params()}|{request.headers.get_all('x-a')}"

    return app


SPECIAL = [b"\r", b"\n", b"\r\n", b"\0", b" ", b":", b"\t", b"0", b"9", b"-", b",", b";", b"\xff"]


class _ErrorLog(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture(scope="module")
def shared() -> Iterator[tuple[EventLoop, _ErrorLog]]:
    loop = EventLoop(name="fuzz")
    errors = _ErrorLog()
    logger = logging.getLogger("ioreactor")
    logger.addHandler(errors)
    yield loop, errors
    logger.removeHandler(errors)
    loop.close()


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(b"".join(draw(st.lists(st.sampled_from(VALID), min_size=1, max_size=4))))
    for _ in range(draw(st.integers(0, 6))):
        pos = draw(st.integers(0, len(data)))
        action = draw(st.sampled_from(["flip", "insert", "delete", "repeat"]))
        if action == "flip" and pos < len(data):
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif action == "insert":
            data[pos:pos] = draw(st.sampled_from(SPECIAL)) * draw(st.integers(1, 3))
        elif action == "delete":
            del data[pos : pos + draw(st.integers(1, 4))]
        else:
            data[pos:pos] = data[max(0, pos - 8) : pos] * draw(st.integers(1, 50))
    return bytes(data)


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points) if b > a]


def check(shared: tuple[EventLoop, _ErrorLog], data: bytes, cuts: list[int]) -> None:
    loop, errors = shared
    errors.records.clear()
    with Harness(fuzz_app(), LIMITS, loop=loop) as h:
        for piece in split(data, cuts):
            h.send(piece)
            if h.eof:
                break
        h.half_close()  # the client is done: nothing may hang (not even a lingering close)
        for _ in range(3):
            if h.conn.closed:
                break
            h.spin()
        received = bytes(h.received)
        assert h.conn.closed, (data, received)
    assert not errors.records, [r.getMessage() for r in errors.records]
    assert received == b"" or received.startswith(b"HTTP/1.1 "), received[:80]
    if b"HEAD" not in data and b"100-continue" not in data.lower():
        responses = parse_responses(received)  # well-formed, framed responses only
        assert len(responses) <= data.count(b"HTTP/") + 1


@settings(
    max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.binary(max_size=600), cuts=st.lists(st.integers(0, 600), max_size=6))
def test_random_bytes(shared: tuple[EventLoop, _ErrorLog], data: bytes, cuts: list[int]) -> None:
    check(shared, data, cuts)


@settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=mutated(), cuts=st.lists(st.integers(0, 4000), max_size=8))
def test_mutated_valid_requests(
    shared: tuple[EventLoop, _ErrorLog], data: bytes, cuts: list[int]
) -> None:
    check(shared, data, cuts)
