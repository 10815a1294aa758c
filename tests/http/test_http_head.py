"""The response-head encoder (:mod:`ioreactor.http.head`) and the three kinds of response
built on it: a handler's :class:`Response`, an ASGI application's and a WSGI one's.

The rules: the order of the lines; no framing field for 1xx, 204 and 304, chunked or
Content-Length otherwise; a HEAD response keeps its GET's length without the body; the
Connection field by version and keep-alive; and no field value with a line break (or a
bad name) ever reaches the encoder from any of the three. The last test serves the
same response from the three servers on real sockets: their bytes must be the same."""

from __future__ import annotations

import re
import socket
from collections.abc import Iterable, Iterator
from typing import Any

import pytest
from http_support import live_server

from ioreactor.http.app import App
from ioreactor.http.asgi.fields import encode_fields as encode_asgi_fields
from ioreactor.http.date import DATE
from ioreactor.http.head import (
    CHUNKED_FIELD,
    CLOSE_FIELD,
    KEEP_ALIVE_FIELD,
    connection_field,
    encode_head,
    framing_field,
    has_body,
    status_line,
)
from ioreactor.http.headers import HeaderError
from ioreactor.http.request import Request
from ioreactor.http.response import Response
from ioreactor.http.server import HttpServer
from ioreactor.http.wsgi import WsgiDispatcher
from ioreactor.http.wsgi.response import ResponseWriter
from ioreactor.testing import LoopThread, read_until_closed
from support.asgi import AsgiThread, Receive, Scope, Send
from support.http import parse_responses

SERVER = b"Server: test\r\n"
BODILESS = [100, 101, 103, 204, 304]
WITH_BODY = [200, 201, 206, 299, 404, 500, 599]
#: Values that would split the head if they reached it.
INJECTIONS = ["a\r\nSet-Cookie: x=1", "a\nb", "a\rb", "a\0b"]


# -- the encoder's parts -------------------------------------------------------------------


def test_status_lines_known_unknown_and_out_of_range() -> None:
    assert status_line(200) == b"HTTP/1.1 200 OK\r\n"
    assert status_line(299) == b"HTTP/1.1 299 \r\n"
    for bad in (0, 99, 1000):
        with pytest.raises(ValueError, match="invalid status code"):
            status_line(bad)


@pytest.mark.parametrize("status", BODILESS)
def test_no_framing_field_for_a_status_without_a_body(status: int) -> None:
    assert not has_body(status)
    assert framing_field(status, 5, False) == b""
    assert framing_field(status, -1, True) == b""


@pytest.mark.parametrize("status", WITH_BODY)
def test_framing_is_chunked_or_the_length_or_none(status: int) -> None:
    assert has_body(status)
    assert framing_field(status, 5, True) == CHUNKED_FIELD
    assert framing_field(status, 0, False) == b"Content-Length: 0\r\n"
    assert framing_field(status, 12345, False) == b"Content-Length: 12345\r\n"
    assert framing_field(status, -1, False) == b""  # the close ends it, or the app's own


@pytest.mark.parametrize(
    ("version", "keep_alive", "field"),
    [
        ("1.1", True, b""),
        ("1.1", False, CLOSE_FIELD),
        ("1.0", True, KEEP_ALIVE_FIELD),
        ("1.0", False, CLOSE_FIELD),
    ],
)
def test_connection_field_by_version_and_keep_alive(
    version: str, keep_alive: bool, field: bytes
) -> None:
    request = Request("GET", "/", version)
    request.keep_alive = keep_alive
    assert connection_field(request) == field


def test_the_head_is_its_lines_in_wire_order_and_parses() -> None:
    head = encode_head(
        status_line(201),
        SERVER,
        b"Date: then\r\n",
        b"X-A: 1\r\nX-B: 2\r\n",
        b"Content-Length: 2\r\n",
        CLOSE_FIELD,
    )
    assert head == (
        b"HTTP/1.1 201 Created\r\nServer: test\r\nDate: then\r\nX-A: 1\r\nX-B: 2\r\n"
        b"Content-Length: 2\r\nConnection: close\r\n\r\n"
    )
    (response,) = parse_responses(head + b"ok")
    assert (response.status, response.body) == (201, b"ok")
    assert response.headers[-2:] == [("Content-Length", "2"), ("Connection", "close")]


# -- what the three hand to it: checked fields ---------------------------------------------


@pytest.mark.parametrize("value", INJECTIONS)
def test_a_line_break_in_a_value_is_refused_by_all_three(value: str) -> None:
    with pytest.raises(HeaderError, match="CR, LF or NUL"):
        Response("x", headers={"X-Evil": value})
    with pytest.raises(HeaderError):
        Response("x").set_header("X-Evil", value)
    with pytest.raises(RuntimeError, match="control characters"):
        encode_asgi_fields([(b"x-evil", value.encode("latin-1"))])
    with pytest.raises(HeaderError, match="CR, LF or NUL"):
        wsgi_writer().start_response("200 OK", [("X-Evil", value)])


@pytest.mark.parametrize("name", ["X Evil", "X:Evil", "X\r\nEvil", ""])
def test_a_name_that_is_not_a_token_is_refused_by_all_three(name: str) -> None:
    with pytest.raises(HeaderError, match="invalid header name"):
        Response("x", headers={name: "v"})
    with pytest.raises(RuntimeError, match="invalid header name"):
        encode_asgi_fields([(name.encode("latin-1"), b"v")])
    with pytest.raises(HeaderError, match="invalid header name"):
        wsgi_writer().start_response("200 OK", [(name, "v")])


def test_the_framing_fields_are_the_servers() -> None:
    """A handler may not frame its own body; an ASGI application's framing fields are
    checked (a length is a number, one framing at most); a WSGI status must be one."""
    for name in ("Content-Length", "Transfer-Encoding", "Date", "Server"):
        with pytest.raises(HeaderError, match="set by the server"):
            Response("x", headers={name: "1"})
    with pytest.raises(HeaderError, match="may only set 'Connection: close'"):
        Response("x", headers={"Connection": "upgrade"})
    with pytest.raises(RuntimeError, match="invalid Content-Length"):
        encode_asgi_fields([(b"content-length", b"-1")])
    with pytest.raises(RuntimeError, match="both Content-Length and Transfer-Encoding"):
        encode_asgi_fields([(b"content-length", b"1"), (b"transfer-encoding", b"chunked")])
    with pytest.raises(RuntimeError, match="conflicting Content-Length"):
        encode_asgi_fields([(b"content-length", b"1"), (b"content-length", b"2")])
    with pytest.raises(ValueError, match="invalid status"):
        wsgi_writer().start_response("200\r\nX: y", [])


def wsgi_writer() -> ResponseWriter:
    """A writer as the WSGI dispatcher makes one (start_response never touches the
    connection or the post)."""
    return ResponseWriter("GET", "1.1", None, lambda answer: None, 1.0)  # type: ignore[arg-type]


# -- the native response's rules ---------------------------------------------------------


def test_a_whole_response_has_its_length_and_head_keeps_it_without_the_body() -> None:
    response = Response("hello", 200, headers={"X-A": "1"})
    head = (
        b"HTTP/1.1 200 OK\r\nServer: test\r\n%sContent-Type: text/plain; charset=utf-8\r\n"
        b"X-A: 1\r\nContent-Length: 5\r\n\r\n" % DATE.line
    )
    assert response.encode(b"", SERVER) == head + b"hello"
    assert response.encode(b"", SERVER, head=True) == head


@pytest.mark.parametrize("status", [204, 304])
def test_a_bodiless_response_has_no_length_and_no_body(status: int) -> None:
    data = Response(b"ignored", status).encode(CLOSE_FIELD, SERVER)
    assert b"Content-Length" not in data
    assert data.endswith(b"Connection: close\r\n\r\n")


# -- one encoder: the three servers answer with the same bytes ---------------------------

#: (status, body) answered by every server; the body is dropped where there is none.
CASES = [(200, b"hello"), (404, b"gone\n"), (204, b""), (304, b"")]
REASONS = {200: "OK", 404: "Not Found", 204: "No Content", 304: "Not Modified"}
FIELDS = [("Content-Type", "text/plain"), ("X-Kind", "same")]


def native_app() -> App:
    app = App()
    for status, body in CASES:

        def answer(request: Request, status: int = status, body: bytes = body) -> Response:
            return Response(body, status, headers={"X-Kind": "same"}, content_type="text/plain")

        app.add_route(f"/{status}", answer, ("GET", "HEAD"))
    return app


async def asgi_app(scope: Scope, receive: Receive, send: Send) -> None:
    """The cases over HTTP, and as the denial of a WebSocket handshake."""
    status = int(scope["path"][1:])
    fields = [(n.encode(), v.encode()) for n, v in FIELDS]
    kind = "http.response" if scope["type"] == "http" else "websocket.http.response"
    if kind == "websocket.http.response":
        assert (await receive())["type"] == "websocket.connect"
    await send({"type": f"{kind}.start", "status": status, "headers": fields})
    await send({"type": f"{kind}.body", "body": dict(CASES)[status]})


def wsgi_app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    status = int(environ["PATH_INFO"][1:])
    body = dict(CASES)[status]
    # The application frames its own body (a WSGI server sends what it is given).
    length = [("Content-Length", str(len(body)))] if has_body(status) else []
    start_response(f"{status} {REASONS[status]}", FIELDS + length)
    return [body]


def exchange(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10.0) as sock:
        sock.sendall(data)
        raw, closed = read_until_closed(sock, 10.0)
    assert closed
    return re.sub(rb"Date: [^\r]*\r\n", b"Date: -\r\n", raw)


def requests() -> Iterator[tuple[str, bytes]]:
    """Each case as GET and HEAD, over HTTP/1.1 kept alive then closed, and HTTP/1.0
    closed and kept alive (the last request of a connection asks for the close)."""
    for status, _ in CASES:
        for method in ("GET", "HEAD"):
            line = f"{method} /{status} HTTP/1.1\r\nHost: t\r\n".encode()
            line10 = f"{method} /{status} HTTP/1.0\r\n".encode()
            yield (
                f"{method} {status} 1.1",
                line + b"\r\n" + line + b"Connection: close\r\n\r\n",
            )
            yield (
                f"{method} {status} 1.0",
                line10 + b"Connection: keep-alive\r\n\r\n" + line10 + b"\r\n",
            )


def closing_get(status: int) -> bytes:
    return b"GET /%d HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n" % status


def handshake(status: int) -> bytes:
    return (
        b"GET /%d HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n" % status
    )


def test_the_native_asgi_and_wsgi_servers_answer_with_the_same_bytes() -> None:
    answers: dict[str, dict[str, bytes]] = {}
    with live_server(native_app()) as (lt, server):
        port = lt.call(lambda: server.port)
        answers["native"] = {name: exchange(port, data) for name, data in requests()}
        closing = {status: exchange(port, closing_get(status)) for status, _ in CASES}
    with AsgiThread(asgi_app) as asgi:
        port = asgi.server.port
        answers["asgi"] = {name: exchange(port, data) for name, data in requests()}
        denials = {status: exchange(port, handshake(status)) for status, _ in CASES}
    dispatcher = WsgiDispatcher(wsgi_app)
    try:
        with LoopThread(name="wsgi-head") as lt:
            wsgi = HttpServer(lt.loop, ("127.0.0.1", 0), dispatcher)
            lt.call(wsgi.start)
            try:
                port = lt.call(lambda: wsgi.port)
                answers["wsgi"] = {name: exchange(port, data) for name, data in requests()}
            finally:
                lt.call(wsgi.close)
    finally:
        dispatcher.close()
    native = answers["native"]
    assert native["GET 200 1.1"] == (
        b"HTTP/1.1 200 OK\r\nServer: ioreactor\r\nDate: -\r\nContent-Type: text/plain\r\n"
        b"X-Kind: same\r\nContent-Length: 5\r\n\r\nhello"
        b"HTTP/1.1 200 OK\r\nServer: ioreactor\r\nDate: -\r\nContent-Type: text/plain\r\n"
        b"X-Kind: same\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello"
    )
    assert native["HEAD 404 1.0"] == (
        b"HTTP/1.1 404 Not Found\r\nServer: ioreactor\r\nDate: -\r\nContent-Type: text/plain\r\n"
        b"X-Kind: same\r\nContent-Length: 5\r\nConnection: keep-alive\r\n\r\n"
        b"HTTP/1.1 404 Not Found\r\nServer: ioreactor\r\nDate: -\r\nContent-Type: text/plain\r\n"
        b"X-Kind: same\r\nContent-Length: 5\r\nConnection: close\r\n\r\n"
    )
    assert b"Content-Length" not in native["GET 204 1.1"] + native["GET 304 1.0"]
    for name, data in native.items():
        assert answers["asgi"][name] == data, name
        assert answers["wsgi"][name] == data, name
    # An ASGI application's denial of a WebSocket handshake is a closing response.
    assert denials == closing
