"""The PEP 3333 environ a WSGI application gets, over real loopback connections.

The application is ``support.wsgi_apps.environ_app``, wrapped in wsgiref's validator: a
key missing or of the wrong type, or ``wsgi.input`` used the wrong way, would make it
raise, which the server answers 500 and logs (each test checks neither happened).
"""

from __future__ import annotations

import json
import logging
import socket
from typing import Any

import httpx
import pytest
from wsgi_support import TIMEOUT, exchange, get, wsgi_server

from ioreactor.http.wsgi.environ import path_info
from ioreactor.net.proxy_protocol import ProxyProtocolHandler, ProxyTrust
from ioreactor.net.server import TcpServer
from ioreactor.testing import LoopThread
from support.http_responses import parse
from support.wsgi_apps import environ_app


@pytest.fixture(autouse=True)
def no_errors(caplog: pytest.LogCaptureFixture) -> Any:
    caplog.set_level(logging.WARNING, logger="ioreactor")
    yield
    assert not caplog.records, [r.getMessage() for r in caplog.records]


def environ_of(port: int, raw: bytes) -> dict[str, Any]:
    data, _ = exchange(port, raw)
    (reply,) = parse(data)
    assert reply.status == 200, data
    report: dict[str, Any] = json.loads(reply.body)
    return report


def test_the_keys_pep_3333_names() -> None:
    with wsgi_server(environ_app, threads=4) as (server, _):
        port = server.port
        env = environ_of(port, get("/env/a?x=1&y=%20", "Content-Type: text/x-test", "X-Custom: v"))
    assert env["REQUEST_METHOD"] == "GET"
    assert env["SCRIPT_NAME"] == ""
    assert env["PATH_INFO"] == "/env/a"
    assert env["QUERY_STRING"] == "x=1&y=%20"
    assert env["CONTENT_TYPE"] == "text/x-test"
    assert "CONTENT_LENGTH" not in env and "HTTP_CONTENT_TYPE" not in env
    assert env["SERVER_NAME"] == "127.0.0.1" and env["SERVER_PORT"] == str(port)
    assert env["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert env["REMOTE_ADDR"] == "127.0.0.1" and int(env["REMOTE_PORT"]) > 0
    assert env["HTTP_HOST"] == "wsgi.test" and env["HTTP_X_CUSTOM"] == "v"
    assert env["wsgi.url_scheme"] == "http"
    assert env["wsgi.version"] == [1, 0]
    assert env["wsgi.multithread"] is True and env["wsgi.multiprocess"] is False
    assert env["wsgi.run_once"] is False
    assert env["file_wrapper"] is True


def test_path_info_is_latin1_text_of_the_decoded_bytes() -> None:
    # PEP 3333: "bytes as str": %C3%A9 (UTF-8 é) is two latin-1 characters, and a byte
    # that is not UTF-8 at all survives as one.
    with wsgi_server(environ_app) as (server, _):
        env = environ_of(server.port, get("/env/caf%C3%A9/%FF/a%2Fb"))
    assert env["PATH_INFO"] == "/env/caf\u00c3\u00a9/\u00ff/a/b"
    assert env["PATH_INFO"].encode("latin-1").decode("utf-8", "replace").startswith("/env/café")


def test_root_path_is_script_name_and_leaves_path_info() -> None:
    with wsgi_server(environ_app, root_path="/app") as (server, _):
        env = environ_of(server.port, get("/app/env/x"))
        assert (env["SCRIPT_NAME"], env["PATH_INFO"]) == ("/app", "/env/x")
        env = environ_of(server.port, get("/app"))
        assert (env["SCRIPT_NAME"], env["PATH_INFO"]) == ("/app", "")
        # outside the mount point: not the application's
        for outside in ("/other/env", "/application/env"):
            data, _ = exchange(server.port, get(outside))
            assert parse(data)[0].status == 404, outside


def test_path_info_units() -> None:
    assert path_info("/a%20b?q=%20", "") == "/a b"
    assert path_info("http://example.com/x/y?z", "") == "/x/y"
    assert path_info("/app/x%2F", "/app") == "/x/"
    assert path_info("/apple", "/app") is None


def test_repeated_fields_joined_and_underscore_names_dropped() -> None:
    with wsgi_server(environ_app) as (server, _):
        env = environ_of(
            server.port,
            get(
                "/env",
                "Accept: a",
                "X-Forwarded-For: 10.0.0.1",
                "Accept: b",
                "X_Forwarded_For: 6.6.6.6",
            ),
        )
    assert env["HTTP_ACCEPT"] == "a,b"
    # a name with "_" would pass for X-Forwarded-For in the environ: dropped, as gunicorn does
    assert env["HTTP_X_FORWARDED_FOR"] == "10.0.0.1"


def test_http_10_request() -> None:
    with wsgi_server(environ_app) as (server, _):
        env = environ_of(server.port, b"GET /env HTTP/1.0\r\n\r\n")
    assert env["SERVER_PROTOCOL"] == "HTTP/1.0"


@pytest.mark.parametrize("how", ["read", "lines", "iter", "chunks"])
def test_wsgi_input_holds_the_whole_body(how: str) -> None:
    body = b"".join(b"line %d\n" % i for i in range(5000))
    with wsgi_server(environ_app) as (server, _), httpx.Client(timeout=TIMEOUT) as client:
        reply = client.post(f"http://127.0.0.1:{server.port}/body?{how}", content=body)
    assert reply.status_code == 200 and reply.content == body


def test_a_chunked_body_gets_its_content_length_once_received() -> None:
    # The body was received whole before the call, so its length is known: frameworks
    # that trust only CONTENT_LENGTH (Django) see it too.
    with wsgi_server(environ_app) as (server, _):
        raw = (
            b"POST /body HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n"
            b"Connection: close\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
        )
        data, _ = exchange(server.port, raw)
    assert parse(data)[0].body == b"hello world"


@pytest.mark.parametrize("how", ["read", "lines", "chunks"])
def test_stream_body_reads_while_the_body_arrives(how: str) -> None:
    body = b"".join(b"row %d\n" % i for i in range(60000))  # ~ 600 KB: past STREAM_BUFFER
    with (
        wsgi_server(environ_app, stream_body=True) as (server, _),
        httpx.Client(timeout=TIMEOUT) as client,
    ):

        def pieces() -> Any:
            for i in range(0, len(body), 10000):
                yield body[i : i + 10000]

        reply = client.post(
            f"http://127.0.0.1:{server.port}/body?{how}",
            content=pieces() if how != "read" else body,
        )
    assert reply.status_code == 200 and reply.content == body


def test_remote_addr_is_the_client_named_by_a_proxy_header() -> None:
    from ioreactor.http.handler import HttpHandler
    from ioreactor.http.wsgi import WsgiDispatcher

    dispatcher = WsgiDispatcher(environ_app)
    with LoopThread(name="wsgi-proxy") as lt:
        handler = ProxyProtocolHandler(HttpHandler(dispatcher), ProxyTrust("127.0.0.1"))
        server = TcpServer(lt.loop, ("127.0.0.1", 0), handler)
        lt.call(server.start)
        try:
            with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as sock:
                sock.sendall(b"PROXY TCP4 203.0.113.7 127.0.0.1 51000 80\r\n" + get("/env"))
                data = b""
                while chunk := sock.recv(65536):
                    data += chunk
        finally:
            lt.call(server.close)
            dispatcher.close()
    env = json.loads(parse(data)[0].body)
    assert (env["REMOTE_ADDR"], env["REMOTE_PORT"]) == ("203.0.113.7", "51000")
