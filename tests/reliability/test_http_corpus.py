"""Every case of the hostile-HTTP corpus against a real server over loopback: the status,
the close, and that the request sent after it is never parsed.

Three times: the native echo App on one loop thread, the same routes as a WSGI
application, and as an ASGI application on ioreactor.aio: the parser refuses every
hostile case the same way before a WSGI thread or an ASGI application sees it."""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from typing import Protocol

import pytest
from http_corpus import CASES, LIMITS, Case
from reliability_support import TIMEOUT

from ioreactor.http.app import App
from ioreactor.http.dispatch import Dispatcher
from ioreactor.http.echo_app import build_echo_app
from ioreactor.http.server import HttpServer
from ioreactor.http.wsgi import WsgiDispatcher
from ioreactor.testing import LoopThread, read_until_closed
from support.asgi import AsgiThread
from support.asgi import echo_app as asgi_echo_app
from support.http import ResponseReader, read_responses
from support.wsgi_apps import echo_app as wsgi_echo_app

#: Sent after every case. GET /echo answers with its request line, so if it is ever
#: answered the response says ``smuggled``.
FOLLOW_UP = b"GET /echo?smuggled HTTP/1.1\r\nHost: t\r\n\r\n"
#: Header names the injection cases try to smuggle into a response.
INJECTED = {"set-cookie", "x-injected"}


class Served(Protocol):
    port: int


@pytest.fixture(scope="module", params=["native", "wsgi", "asgi"])
def server(request: pytest.FixtureRequest) -> Iterator[Served]:
    if request.param == "asgi":
        with AsgiThread(asgi_echo_app, limits=LIMITS) as asgi:
            yield asgi
        return
    app: App | Dispatcher = build_echo_app()
    if request.param == "wsgi":
        app = WsgiDispatcher(wsgi_echo_app, threads=2)
    with LoopThread(name="corpus") as lt:
        srv = HttpServer(lt.loop, ("127.0.0.1", 0), app, limits=LIMITS)
        lt.call(srv.start)
        try:
            yield srv
        finally:
            lt.call(srv.close)
            if isinstance(app, WsgiDispatcher):
                app.close()


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
            parsed = ResponseReader()
            parsed.feed(data)
            assert parsed.statuses == [case.status], data[:200]
            assert parsed[0].closes, "an error response must say Connection: close"
            assert closed, "the server kept the connection open"
            assert b"smuggled" not in data and b"/admin" not in data
        else:
            parsed, data = read_responses(sock, 2)
            assert parsed.statuses == [case.status, 200], data[:200]
            assert b"smuggled" in parsed.bodies[1]  # the next request was framed right
            assert not parsed[0].closes and not parsed[1].closes
    for response in parsed.responses:
        assert not INJECTED & {name.lower() for name, _ in response.headers}
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
