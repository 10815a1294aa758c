"""The ASGI server's HTTP side, to the spec, over real loopback sockets: the scope,
streamed bodies both ways, disconnects, trailers, 100-continue, pipelining, back-pressure
and failures. Each test runs a small ASGI application of its own on an
:class:`~support.asgi.AsgiThread` (the objects ``ioreactor serve`` builds, in a thread)."""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from typing import Any

import httpx
import pytest

from ioreactor.http.asgi import ClientDisconnected
from ioreactor.http.asgi.cycle import BODY_BUFFER
from ioreactor.http.forwarding import ForwardedHeaders
from ioreactor.http.limits import Limits
from ioreactor.http.parser import FEED_SLICE
from ioreactor.net.proxy_protocol import ProxyTrust
from support.asgi import TIMEOUT, AsgiThread, Receive, Scope, Send, echo_app, read_body, respond


def exchange(port: int, data: bytes, *, until: bytes = b"", timeout: float = TIMEOUT) -> bytes:
    """Send raw bytes, read until ``until`` appears or the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        return read_until(sock, until, timeout)


def read_until(sock: socket.socket, until: bytes, timeout: float = TIMEOUT) -> bytes:
    data = b""
    deadline = time.monotonic() + timeout
    while not (until and until in data):
        sock.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            break
        if not chunk:
            break
        data += chunk
    return data


# -- the scope -----------------------------------------------------------------------------


def test_the_scope_in_full() -> None:
    scopes: list[Scope] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            message = await receive()
            scope["state"]["db"] = "connected"
            await send({"type": "lifespan.startup.complete"})
            message = await receive()
            assert message["type"] == "lifespan.shutdown"
            await send({"type": "lifespan.shutdown.complete"})
            return
        scopes.append(scope)
        await respond(send, 200, b"ok")

    with AsgiThread(app, root_path="/api") as server:
        request = (
            b"GET /a%20b/c?x=1&y=%20 HTTP/1.1\r\nHost: example\r\nX-Twice: 1\r\n"
            b"x-twice: 2\r\nUser-Agent: T\r\n\r\n"
        )
        assert exchange(server.port, request, until=b"ok").startswith(b"HTTP/1.1 200 OK\r\n")
        with socket.create_connection(("127.0.0.1", server.port)) as sock:
            sock.sendall(b"GET /v10 HTTP/1.0\r\n\r\n")
            assert read_until(sock, b"ok").endswith(b"ok")
    first, second = scopes
    assert first["type"] == "http"
    assert first["asgi"] == {"version": "3.0", "spec_version": "2.4"}
    assert first["http_version"] == "1.1" and second["http_version"] == "1.0"
    assert first["method"] == "GET" and first["scheme"] == "http"
    assert first["path"] == "/api/a b/c" and first["root_path"] == "/api"
    assert first["raw_path"] == b"/api/a%20b/c"
    assert first["query_string"] == b"x=1&y=%20"
    assert first["headers"] == [
        (b"host", b"example"),
        (b"x-twice", b"1"),
        (b"x-twice", b"2"),
        (b"user-agent", b"T"),
    ]
    client_host, client_port = first["client"]
    assert client_host == "127.0.0.1" and client_port > 0
    assert first["server"] == ("127.0.0.1", server.port)
    assert first["state"] == {"db": "connected"}
    first["state"]["mine"] = 1  # a copy per request
    assert "mine" not in second["state"]
    assert "http.response.trailers" in first["extensions"]


@pytest.mark.parametrize(
    ("allow", "peer_trusted"), [(["127.0.0.1"], True), (["10.0.0.0/8"], False)]
)
def test_proxy_fields_only_from_trusted_peers(allow: list[str], peer_trusted: bool) -> None:
    seen: list[Scope] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            seen.append(scope)
            await respond(send, 200, b"ok")

    with (
        AsgiThread(app, forwarded=ForwardedHeaders(ProxyTrust(allow))) as server,
        httpx.Client() as client,
    ):
        client.get(
            f"http://127.0.0.1:{server.port}/",
            headers={"X-Forwarded-For": "203.0.113.7, 127.0.0.1", "X-Forwarded-Proto": "https"},
        )
        client.get(
            f"http://127.0.0.1:{server.port}/",
            headers={"Forwarded": 'for="[2001:db8::1]:4711";proto=https'},
        )
    xff, forwarded = seen
    if peer_trusted:
        assert xff["client"] == ("203.0.113.7", 0) and xff["scheme"] == "https"
        assert forwarded["client"] == ("2001:db8::1", 4711) and forwarded["scheme"] == "https"
    else:
        assert xff["client"][0] == "127.0.0.1" and xff["scheme"] == "http"
        assert forwarded["client"][0] == "127.0.0.1"


# -- request bodies ------------------------------------------------------------------------


def test_a_streamed_body_arrives_in_pieces_with_more_body() -> None:
    messages: list[dict[str, Any]] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        while True:
            message = await receive()
            messages.append(dict(message))
            if not message.get("more_body"):
                break
        await respond(send, 200, b"".join(m["body"] for m in messages))

    with AsgiThread(app) as server, socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(b"POST /up HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
        for piece in (b"first", b"second", b"third"):
            sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
            time.sleep(0.15)  # each piece its own read
        sock.sendall(b"0\r\n\r\n")
        data = read_until(sock, b"firstsecondthird")
    assert data.endswith(b"firstsecondthird")
    assert len(messages) >= 3
    assert all(m["type"] == "http.request" for m in messages)
    assert [m["more_body"] for m in messages[:-1]] == [True] * (len(messages) - 1)
    assert messages[-1]["more_body"] is False


def test_reading_pauses_while_the_app_does_not_take_the_body() -> None:
    """An application that does not read: the server holds at most BODY_BUFFER and the
    kernel's buffers, so the client's send blocks; once the app reads, it all arrives."""
    release = threading.Event()
    received: list[int] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        while not release.is_set():
            await asyncio.sleep(0.02)
        received.append(len(await read_body(receive)))
        await respond(send, 200, b"done")

    total = 48 * 1024 * 1024
    limits = Limits(max_body=64 * 1024 * 1024)
    with (
        AsgiThread(app, limits=limits) as server,
        socket.create_connection(("127.0.0.1", server.port)) as sock,
    ):
        sock.sendall(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % total)
        sock.settimeout(1.0)
        sent = 0
        block = b"x" * 65536
        try:
            while sent < total:
                sent += sock.send(block[: total - sent])
        except TimeoutError:
            pass
        assert sent < total, "the server read a body nobody asked for without bound"
        held = server.call(lambda: server_held(server))
        assert held <= BODY_BUFFER + 2 * 65536
        release.set()
        sock.settimeout(TIMEOUT)
        sock.sendall(b"x" * (total - sent))
        assert read_until(sock, b"done").endswith(b"done")
    assert received == [total]


def server_held(server: AsgiThread) -> int:
    """Body bytes the server holds for its applications (loop thread)."""
    total = 0
    assert server.server is not None
    for conn in server.server.connections:
        connection = conn.context.context
        for cycle in connection.cycles:
            total += cycle.size
    return total


def test_expect_100_continue_is_sent_when_the_app_first_reads() -> None:
    reading = threading.Event()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        await asyncio.sleep(0.4)
        reading.set()
        body = await read_body(receive)
        await respond(send, 200, body)

    with AsgiThread(app) as server, socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(
            b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n"
        )
        sock.settimeout(0.25)
        with pytest.raises(TimeoutError):
            sock.recv(100)  # nothing before the application asks for the body
        sock.settimeout(TIMEOUT)
        assert read_until(sock, b"\r\n\r\n") == b"HTTP/1.1 100 Continue\r\n\r\n"
        assert reading.is_set()
        sock.sendall(b"body")
        assert read_until(sock, b"body").endswith(b"body")


def test_a_response_without_reading_the_expected_body_closes() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await respond(send, 413, b"no thanks")

    with AsgiThread(app) as server:
        data = exchange(
            server.port,
            b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n",
        )
    assert data.startswith(b"HTTP/1.1 413 ")
    assert b"100 Continue" not in data
    assert b"\r\nConnection: close\r\n" in data


def test_http_disconnect_when_the_client_goes_away() -> None:
    got: list[dict[str, Any]] = []
    done = threading.Event()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        got.append(dict(await receive()))
        got.append(dict(await receive()))  # waits until the client is gone
        done.set()

    with AsgiThread(app) as server:
        with socket.create_connection(("127.0.0.1", server.port)) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            time.sleep(0.2)
        assert done.wait(TIMEOUT)
    assert got == [
        {"type": "http.request", "body": b"", "more_body": False},
        {"type": "http.disconnect"},
    ]


# -- responses -----------------------------------------------------------------------------


def test_responses_stream_chunked_without_a_length_and_as_is_with_one() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        headers = [(b"content-length", b"10")] if scope["path"] == "/sized" else []
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        for piece in (b"01234", b"56789"):
            await send({"type": "http.response.body", "body": piece, "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    with AsgiThread(app) as server:
        chunked = exchange(server.port, b"GET / HTTP/1.1\r\nHost: t\r\n\r\n", until=b"0\r\n\r\n")
        sized = exchange(server.port, b"GET /sized HTTP/1.1\r\nHost: t\r\n\r\n", until=b"56789")
        old = exchange(server.port, b"GET / HTTP/1.0\r\n\r\n")
        head = exchange(server.port, b"HEAD /sized HTTP/1.1\r\nHost: t\r\n\r\n", until=b"\r\n\r\n")
    assert b"\r\nTransfer-Encoding: chunked\r\n" in chunked
    assert chunked.endswith(b"\r\n\r\n5\r\n01234\r\n5\r\n56789\r\n0\r\n\r\n")
    assert b"chunked" not in sized and sized.endswith(b"\r\n\r\n0123456789")
    assert b"chunked" not in old and old.endswith(b"\r\n\r\n0123456789")  # ended by the close
    assert b"\r\nConnection: close\r\n" in old
    assert head.endswith(b"\r\n\r\n") and b"content-length: 10" in head


def test_trailers_when_the_client_asks_for_them() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"trailer", b"x-checksum")],
                "trailers": True,
            }
        )
        await send({"type": "http.response.body", "body": b"data"})
        await send({"type": "http.response.trailers", "headers": [(b"x-checksum", b"abc")]})

    with AsgiThread(app) as server, socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nTE: trailers\r\n\r\n")
        asked = read_until(sock, b"abc\r\n\r\n")
        sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        plain = read_until(sock, b"0\r\n\r\n")
    assert asked.endswith(b"4\r\ndata\r\n0\r\nx-checksum: abc\r\n\r\n")
    assert plain.endswith(b"4\r\ndata\r\n0\r\n\r\n") and b"abc" not in plain


def test_pipelined_requests_are_answered_in_order() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        n = int(scope["path"][1:])
        await asyncio.sleep(0.05 * (5 - n))  # the last one finishes first
        await respond(send, 200, b"<%d>" % n)

    with AsgiThread(app) as server:
        data = exchange(
            server.port,
            b"".join(b"GET /%d HTTP/1.1\r\nHost: t\r\n\r\n" % n for n in range(5)),
            until=b"<4>",
        )
    bodies = [data.index(b"<%d>" % n) for n in range(5)]
    assert bodies == sorted(bodies)


def test_head_drops_the_body_and_keeps_its_length() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await respond(send, 200, b"twelve bytes")

    with AsgiThread(app) as server, socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(b"HEAD / HTTP/1.1\r\nHost: t\r\n\r\nGET / HTTP/1.1\r\nHost: t\r\n\r\n")
        data = read_until(sock, b"twelve bytes")
    first = data[: data.index(b"HTTP/1.1", 5)]
    assert b"Content-Length: 12\r\n" in first and first.endswith(b"\r\n\r\n")
    assert data.count(b"twelve bytes") == 1


# -- back-pressure out ---------------------------------------------------------------------


def test_send_waits_above_the_high_water_mark_and_raises_once_the_client_left() -> None:
    """uvicorn#2754: a send() that waits for a client that stopped reading must return
    (here: raise ClientDisconnected) when that client goes away, never hang."""
    progress: list[int] = []
    outcome: list[BaseException | None] = []
    finished = threading.Event()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        piece = b"x" * 65536
        try:
            for _ in range(10_000):  # 640 MiB: far more than any buffer
                await send({"type": "http.response.body", "body": piece, "more_body": True})
                progress.append(1)
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)
            raise
        finally:
            finished.set()

    with AsgiThread(app, high_water_mark=256 * 1024) as server:
        sock = socket.create_connection(("127.0.0.1", server.port))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        time.sleep(0.5)  # the client reads nothing
        stalled = len(progress)
        time.sleep(0.3)
        assert len(progress) == stalled, "send() kept going while the client read nothing"
        assert stalled < 200  # bounded by the water mark and the kernel's buffers
        sock.close()
        assert finished.wait(TIMEOUT), "send() hung after the client left"
    assert isinstance(outcome[0], ClientDisconnected) and isinstance(outcome[0], OSError)


# -- failures ------------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["raise", "return"])
def test_a_failure_before_the_response_is_a_500_logged_once(
    where: str, caplog: pytest.LogCaptureFixture
) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        if where == "raise":
            raise ValueError("boom")
        await send({"type": "http.response.start", "status": 200, "headers": []})

    caplog.set_level(logging.ERROR, logger="ioreactor.asgi")
    with AsgiThread(app) as server:
        data = exchange(server.port, b"GET /x?y=1 HTTP/1.1\r\nHost: t\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 500 Internal Server Error\r\n")
    assert data.endswith(b"Internal Server Error\n")
    records = [r for r in caplog.records if r.name == "ioreactor.asgi"]
    assert len(records) == 1
    assert '"GET /x?y=1 HTTP/1.1"' in records[0].getMessage()


def test_a_failure_after_the_response_started_closes_the_connection(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"partial", "more_body": True})
        raise ValueError("boom")

    caplog.set_level(logging.ERROR, logger="ioreactor.asgi")
    with AsgiThread(app) as server:
        data = exchange(server.port, b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")  # until closed
    assert data.startswith(b"HTTP/1.1 200 OK\r\n") and data.endswith(b"7\r\npartial\r\n")
    assert len([r for r in caplog.records if r.name == "ioreactor.asgi"]) == 1


def test_invalid_response_fields_never_reach_the_wire() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await respond(send, 200, b"x", [(b"x-evil", b"a\r\nSet-Cookie: s=1")])

    with AsgiThread(app) as server:
        data = exchange(server.port, b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 500 ") and b"Set-Cookie" not in data


def test_an_app_that_never_answers_cannot_pile_up_requests() -> None:
    """Parsing pauses once max_pending_responses wait: a client pipelining requests to
    an application that never answers costs a bounded number of them."""
    calls: list[int] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            calls.append(1)
            await asyncio.Event().wait()

    request = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n"
    limits = Limits(max_pending_responses=8)
    with (
        AsgiThread(app, limits=limits) as server,
        socket.create_connection(("127.0.0.1", server.port)) as sock,
    ):
        sock.sendall(request * 5000)
        time.sleep(0.5)
        # httptools cannot stop inside a feed: at most one slice's requests past the limit
        assert 8 <= server.call(lambda: len(calls)) <= 8 + FEED_SLICE // len(request) + 1


def test_the_native_deadlines_hold_for_asgi_apps() -> None:
    """A slow head (slowloris) gets 408 before the app sees it; an app that never reads
    a body cannot hold the connection past the body timeout either."""
    calls: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            calls.append(scope["path"])
            await asyncio.Event().wait()  # never reads, never answers

    limits = Limits(header_timeout=0.5, body_timeout=0.5, sweep_interval=0.1)
    with AsgiThread(app, limits=limits) as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as slow:
            slow.sendall(b"GET /slow HTTP/1.1\r\nHost: t\r\nX-Drip: ")
            started = time.monotonic()
            data = read_until(slow, b"\r\n\r\n")
            assert data.startswith(b"HTTP/1.1 408 ") and time.monotonic() - started < 5
        with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as body:
            body.sendall(b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 1000000\r\n\r\n")
            body.sendall(b"x" * 100_000)  # then the client stalls, and nobody reads
            data = read_until(body, b"\r\n\r\n")
            assert data.startswith(b"HTTP/1.1 408 ")
    assert calls == ["/upload"]


def test_http_server_gives_an_asgi_dispatcher_its_handler() -> None:
    from ioreactor.http.asgi import AsgiDispatcher, AsgiHandler
    from ioreactor.http.server import HttpServer
    from ioreactor.loop.event_loop import EventLoop

    loop = EventLoop()
    try:
        server = HttpServer(loop, "127.0.0.1:0", AsgiDispatcher(echo_app))
        assert type(server.handler) is AsgiHandler
    finally:
        loop.close()
