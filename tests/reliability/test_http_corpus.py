"""Every case of the hostile-HTTP corpus against a real server over loopback: the status,
the close, and that the request sent after it is never parsed.

Twice: against the native server (the echo App on one loop thread) and against the
ASGI server (the same routes as an ASGI application on ioreactor.aio): everything the
native server refuses is refused the same way before an ASGI application sees it."""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from typing import Protocol

import pytest
from http_corpus import CASES, LIMITS, Case
from reliability_support import TIMEOUT, Responses, read_until_closed

from ioreactor.http.echo_app import build_echo_app
from ioreactor.http.server import HttpServer
from ioreactor.testing import LoopThread
from support.asgi import AsgiThread, echo_app

#: Sent after every case. GET /echo answers with its request line, so if it is ever
#: answered the response says ``smuggled``.
FOLLOW_UP = b"GET /echo?smuggled HTTP/1.1\r\nHost: t\r\n\r\n"
#: Header names the injection cases try to smuggle into a response.
INJECTED = {b"set-cookie", b"x-injected"}


class Served(Protocol):
    port: int


@pytest.fixture(scope="module", params=["native", "asgi"])
def server(request: pytest.FixtureRequest) -> Iterator[Served]:
    if request.param == "asgi":
        with AsgiThread(echo_app, limits=LIMITS) as asgi:
            yield asgi
        return
    with LoopThread(name="corpus") as lt:
        srv = HttpServer(lt.loop, ("127.0.0.1", 0), build_echo_app(), limits=LIMITS)
        lt.call(srv.start)
        try:
            yield srv
        finally:
            lt.call(srv.close)


def read_responses(sock: socket.socket, count: int) -> tuple[Responses, bytes]:
    parsed = Responses()
    data = b""
    while len(parsed) < count:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
        parsed.feed(chunk)
    return parsed, data


def params() -> list[object]:
    return [
        pytest.param(case, id=case.name, marks=[pytest.mark.xfail(strict=True, reason=case.bug)])
        if case.bug
        else pytest.param(case, id=case.name)
        for case in CASES
    ]


@pytest.mark.parametrize("case", params())
def test_corpus_case(server: Served, case: Case, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="ioreactor")
    with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as sock:
        sock.sendall(case.raw + FOLLOW_UP)
        if case.close:
            data, closed = read_until_closed(sock, timeout=3.0 if case.bug else TIMEOUT)
            parsed = Responses()
            parsed.feed(data)
            assert parsed.statuses == [case.status], data[:200]
            assert parsed.says_close(0), "an error response must say Connection: close"
            assert closed, "the server kept the connection open"
            assert b"smuggled" not in data and b"/admin" not in data
        else:
            parsed, data = read_responses(sock, 2)
            assert parsed.statuses == [case.status, 200], data[:200]
            assert b"smuggled" in parsed.bodies[1]  # the next request was framed right
            assert not parsed.says_close(0) and not parsed.says_close(1)
    for head in parsed.headers:
        assert not INJECTED & {name for name, _ in head}
    assert not caplog.records, [r.getMessage() for r in caplog.records]  # no crash, no 500


def test_trailer_fields_never_reach_the_next_request(server: Served) -> None:
    chunked = (
        b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n0\r\nAuthorization: Bearer stolen\r\nX-Trailer: 1\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as sock:
        sock.sendall(chunked + b"GET /echo HTTP/1.1\r\nHost: next\r\n\r\n")
        parsed, _ = read_responses(sock, 2)
    assert parsed.statuses == [200, 200]
    assert parsed.bodies[0] == b"hello"
    second = parsed.bodies[1].decode("latin-1")
    assert "Authorization" not in second and "X-Trailer" not in second, second
