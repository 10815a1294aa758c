"""HTTP/1.1 semantics of one connection: parsing, pipelining order, keep-alive, HEAD,
100-continue, chunked bodies, streaming and pool handlers, all through the harness."""

from __future__ import annotations

import socket
import threading
import time

import pytest
from http_support import Harness, gated_slow_app

from ioreactor.http.app import App
from ioreactor.http.errors import HttpError
from ioreactor.http.headers import HeaderError
from ioreactor.http.limits import Limits
from ioreactor.http.protocol import IDLE, LINGER
from ioreactor.http.request import Request
from ioreactor.http.response import Response, StreamingResponse
from support.http import parse_responses, status_of

GET = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n"


def echo_get(i: int) -> bytes:
    return b"GET /echo?i=%d HTTP/1.1\r\nHost: t\r\n\r\n" % i


def test_hello_world_response_head_and_body() -> None:
    with Harness() as h:
        h.send(GET)
        data = h.take()
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        assert lines[0] == b"HTTP/1.1 200 OK"
        fields = dict(line.split(b": ", 1) for line in lines[1:])
        assert fields[b"Server"] == b"ioreactor"
        assert fields[b"Content-Type"] == b"text/plain; charset=utf-8"
        assert fields[b"Content-Length"] == b"13"
        assert fields[b"Date"].endswith(b" GMT")
        assert b"Connection" not in fields  # keep-alive is HTTP/1.1's default
        assert body == b"Hello, World!"
        assert not h.eof


def test_echo_routes() -> None:
    with Harness() as h:
        h.send(
            b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
            b'Content-Length: 7\r\n\r\n{"a":1}'
        )
        h.send(b"GET /echo?x=1 HTTP/1.1\r\nHost: t\r\nX-Thing: A b\r\n\r\n")
        h.send(b"PUT /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc")
        h.send(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\nGET /missing HTTP/1.1\r\nHost: t\r\n\r\n")
        post, get, put, health, missing = h.responses()
        assert (post.status, post.body, post.header("content-type")) == (
            200,
            b'{"a":1}',
            "application/json",
        )
        assert get.body == b"GET /echo?x=1 HTTP/1.1\nHost: t\nX-Thing: A b\n"
        assert (put.status, put.body, put.header("content-type")) == (
            200,
            b"abc",
            "application/octet-stream",
        )
        assert health.status == 200
        assert missing.status == 404
        assert not h.eof  # errors of the application keep the connection


def test_method_not_allowed_lists_allow() -> None:
    with Harness() as h:
        h.send(b"DELETE /echo HTTP/1.1\r\nHost: t\r\n\r\n")
        (response,) = h.responses()
        assert response.status == 405
        assert response.header("allow") == "GET, HEAD, POST, PUT"


@pytest.mark.parametrize("request_bytes", [GET, echo_get(7) + echo_get(8)])
def test_split_at_every_byte(request_bytes: bytes) -> None:
    """The same responses whether a request arrives whole or one byte per read."""
    with Harness() as whole:
        whole.send(request_bytes)
        expected = whole.responses()
    with Harness() as h:
        h.send_split(request_bytes, 1)
        got = h.responses()
    assert [(r.status, r.body) for r in got] == [(r.status, r.body) for r in expected]
    assert len(got) == request_bytes.count(b"GET ")


def test_chunked_body_split_at_every_byte() -> None:
    body = (
        b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"4\r\nWiki\r\n5;ext=1\r\npedia\r\n0\r\nX-Trailer: t\r\n\r\n"
    )
    with Harness() as h:
        h.send_split(body, 1)
        (response,) = h.responses()
        assert (response.status, response.body) == (200, b"Wikipedia")
        assert not h.eof


def test_pipelined_responses_in_order_in_one_send() -> None:
    """16 requests in one read: 16 responses, in order, in a single send system call."""
    with Harness() as h:
        h.spin()
        before = h.sock.sends
        h.send(b"".join(echo_get(i) for i in range(16)))
        responses = h.responses()
        assert [r.body.split(b" ")[1] for r in responses] == [b"/echo?i=%d" % i for i in range(16)]
        assert h.sock.sends - before == 1


def test_responses_of_one_read_coalesce_with_mixed_routes() -> None:
    with Harness() as h:
        h.spin()
        before = h.sock.sends
        h.send(
            GET + b"GET /healthz HTTP/1.1\r\nHost: t\r\n"
            b"\r\n" + b"GET /nope HTTP/1.1\r\nHost: t\r\n\r\n" + GET
        )
        assert [r.status for r in h.responses()] == [200, 200, 404, 200]
        assert h.sock.sends - before == 1


def test_http10_closes_by_default_and_keeps_alive_on_request() -> None:
    with Harness() as h:
        h.send(b"GET / HTTP/1.0\r\n\r\n")
        data = h.take()
        assert b"Connection: close\r\n" in data
        assert h.eof
    with Harness() as h:
        h.send(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        data = h.take()
        assert b"Connection: keep-alive\r\n" in data
        assert not h.eof
        h.send(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        assert status_of(h.take()) == 200


def test_connection_close_closes_after_response_and_ignores_the_rest() -> None:
    with Harness() as h:
        h.send(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n" + GET)
        responses = h.responses()
        assert len(responses) == 1
        assert responses[0].header("connection") == "close"
        h.half_close()
        assert h.eof


def test_close_waits_for_the_peer_then_lingers_out() -> None:
    """After the last response the server sends FIN and reads until the peer closes."""
    limits = Limits(linger_timeout=5.0)
    with Harness(limits=limits) as h:
        h.send(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        assert h.protocol.phase == LINGER
        assert h.eof  # FIN received by the client
        assert not h.conn.closed  # still reading what the peer may send
        h.send(b"garbage after close")
        assert not h.conn.closed
        h.protocol.check_timeouts(h.loop.now + 6.0)
        h.spin()
        assert h.conn.closed


def test_head_sends_no_body_but_the_length() -> None:
    with Harness() as h:
        h.send(b"HEAD / HTTP/1.1\r\nHost: t\r\n\r\n" + GET)
        data = h.take()
        head, _, rest = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 OK")
        assert b"Content-Length: 13" in head
        assert rest.startswith(b"HTTP/1.1 200 OK")  # no body between the two heads
        assert rest.endswith(b"Hello, World!")


def test_expect_100_continue() -> None:
    with Harness() as h:
        h.send(
            b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
        )
        assert h.take() == b"HTTP/1.1 100 Continue\r\n\r\n"
        h.send(b"hello")
        (response,) = parse_responses(h.take())
        assert (response.status, response.body) == (200, b"hello")


def test_expect_100_continue_refused_when_too_large() -> None:
    with Harness(limits=Limits(max_body=10)) as h:
        h.send(
            b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\nExpect: 100-continue\r\n\r\n"
        )
        data = h.take()
        assert status_of(data) == 413
        assert b"100 Continue" not in data
        assert b"Connection: close" in data


def test_unknown_expectation_is_417() -> None:
    with Harness() as h:
        h.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nExpect: teapot\r\n\r\nx")
        assert status_of(h.take()) == 417


def test_handler_errors() -> None:
    app = App()

    @app.route("/boom")
    def boom(request: Request) -> str:
        raise RuntimeError("bug")

    @app.route("/teapot")
    def teapot(request: Request) -> str:
        raise HttpError(418, "short and stout")

    @app.route("/none")
    def nothing(request: Request) -> object:
        return None

    with Harness(app) as h:
        h.send(
            b"GET /boom HTTP/1.1\r\nHost: t\r\n"
            b"\r\nGET /teapot HTTP/1.1\r\nHost: t\r\n\r\nGET /none HTTP/1.1\r\nHost: t\r\n\r\n"
        )
        assert [r.status for r in h.responses()] == [500, 418, 500]
        assert not h.eof  # the framing is intact: the connection goes on


def test_response_header_injection_never_reaches_the_wire() -> None:
    app = App()

    @app.route("/inject")
    def inject(request: Request) -> Response:
        return Response("x", headers={"X-Evil": "a\r\nSet-Cookie: stolen=1"})

    @app.route("/later")
    def later(request: Request) -> Response:
        response = Response("x")
        response.set_header("X-Evil", "a\nb")
        return response

    with Harness(app) as h:
        h.send(b"GET /inject HTTP/1.1\r\nHost: t\r\n\r\nGET /later HTTP/1.1\r\nHost: t\r\n\r\n")
        data = h.take()
        assert b"stolen" not in data
        assert [r.status for r in parse_responses(data)] == [500, 500]
    with pytest.raises(HeaderError):
        Response("x", headers=[("X", "\0")])
    with pytest.raises(HeaderError):
        Response("x", headers=[("Bad Name", "v")])
    with pytest.raises(HeaderError):
        Response("x", headers=[("Content-Length", "5")])


@pytest.mark.parametrize("blocking", [False, True])
def test_http_error_with_close_ends_the_connection(blocking: bool) -> None:
    """``HttpError(..., close=True)`` from a handler (on the loop or in the pool): the
    response says ``Connection: close`` and nothing after it is answered."""
    app = App()

    @app.route("/fail", blocking=blocking)
    def fail(request: Request) -> str:
        raise HttpError(503, "go away", close=True)

    with Harness(app) as h:
        h.send(b"GET /fail HTTP/1.1\r\nHost: t\r\n\r\n" + GET)
        h.spin_until(lambda: bool(h.responses()))
        (response,) = h.responses()
        assert response.status == 503 and response.header("connection") == "close"
        assert h.protocol.phase == LINGER


def test_handler_may_ask_to_close() -> None:
    app = App()

    @app.route("/bye")
    def bye(request: Request) -> Response:
        return Response("bye", headers={"Connection": "close"})

    with Harness(app) as h:
        h.send(b"GET /bye HTTP/1.1\r\nHost: t\r\n\r\n" + GET)
        (response,) = h.responses()
        assert response.header("connection") == "close"
        assert h.protocol.phase == LINGER


def test_path_parameters_and_query() -> None:
    app = App()

    @app.route("/users/{user}/posts/{post}")
    def post(request: Request) -> str:
        return f"{request.params['user']}:{request.params['post']}:{request.query_params()}"

    with Harness(app) as h:
        h.send(b"GET /users/ann%20b/posts/7?x=1&y=2 HTTP/1.1\r\nHost: t\r\n\r\n")
        h.send(
            b"GET /users/%ff%c3%a9/posts/8 HTTP/1.1\r\nHost: t\r\n\r\n"
        )  # bad UTF-8 kept as bytes
        first, second = h.responses()
        assert first.body == b"ann b:7:{'x': '1', 'y': '2'}"
        assert second.body == b"\xff\xc3\xa9:8:{}"


def test_blocking_handlers_answer_in_request_order() -> None:
    """A slow pool handler ahead of fast loop handlers: responses still in order."""
    app = App()
    release = threading.Event()

    @app.route("/slow", blocking=True)
    def slow(request: Request) -> str:
        release.wait(10)
        return "slow"

    @app.route("/fast")
    def fast(request: Request) -> str:
        return "fast"

    with Harness(app) as h:
        h.send(
            b"GET /slow HTTP/1.1\r\nHost: t\r\n"
            b"\r\nGET /fast HTTP/1.1\r\nHost: t\r\n\r\nGET /fast HTTP/1.1\r\nHost: t\r\n\r\n"
        )
        assert h.take() == b""  # the fast ones wait behind the slow one
        release.set()
        deadline = time.monotonic() + 10
        while len(h.responses()) < 3 and time.monotonic() < deadline:
            h.loop.run_once(0.05)
            h.spin()
        assert [r.body for r in h.responses()] == [b"slow", b"fast", b"fast"]
        assert h.protocol.phase == IDLE and not h.protocol.queue.pending


def test_streaming_response_is_chunked_and_ordered() -> None:
    app = App()
    streams: list[StreamingResponse] = []

    @app.route("/stream")
    def stream(request: Request) -> StreamingResponse:
        response = StreamingResponse(content_type="text/plain")
        response.write("early,")
        streams.append(response)
        return response

    app.add_route("/", lambda request: "Hello, World!")

    with Harness(app) as h:
        h.send(b"GET /stream HTTP/1.1\r\nHost: t\r\n\r\n" + GET)
        (stream_response,) = streams
        stream_response.write(b"more")
        h.spin()
        data = h.take()
        assert b"Transfer-Encoding: chunked" in data
        assert b"6\r\nearly,\r\n4\r\nmore\r\n" in data
        assert b"Hello" not in data  # the next response waits for the stream's end
        stream_response.end()
        h.spin()
        data = h.take()
        assert data.startswith(b"0\r\n\r\nHTTP/1.1 200 OK")
        assert data.endswith(b"Hello, World!")


def test_streaming_response_to_http10_closes_at_end() -> None:
    app = App()

    @app.route("/stream")
    def stream(request: Request) -> StreamingResponse:
        response = StreamingResponse()
        response.write("all of it")
        response.end()
        return response

    with Harness(app) as h:
        h.send(b"GET /stream HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        data = h.take()
        assert b"Transfer-Encoding" not in data
        assert b"Connection: close" in data
        assert data.endswith(b"\r\n\r\nall of it")
        assert h.eof


def test_streamed_request_body_reaches_a_consumer_in_chunks() -> None:
    app = App()
    chunks: list[bytes] = []

    class Collect:
        def on_data(self, chunk: bytes) -> None:
            chunks.append(chunk)

        def on_end(self) -> str:
            return f"{len(chunks)} chunks, {sum(map(len, chunks))} bytes"

    @app.route("/upload", methods=["PUT"], stream_body=True)
    def upload(request: Request) -> Collect:
        assert request.body is None
        return Collect()

    with Harness(app) as h:
        h.send(b"PUT /upload HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
        for _ in range(3):
            h.send(b"400\r\n" + b"x" * 1024 + b"\r\n")
        h.send(b"0\r\n\r\n")
        (response,) = h.responses()
        assert response.body == b"3 chunks, 3072 bytes"


def test_max_requests_per_connection() -> None:
    with Harness(limits=Limits(max_requests_per_connection=3)) as h:
        h.send(GET * 5)
        responses = h.responses()
        assert len(responses) == 3
        assert [r.header("connection") for r in responses] == [None, None, "close"]
        assert h.protocol.phase == LINGER


def test_upgrade_requests_are_answered_and_closed() -> None:
    with Harness() as h:
        h.send(
            b"GET / HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n" + GET
        )
        responses = h.responses()
        assert len(responses) == 1
        assert responses[0].header("connection") == "close"


def test_half_close_after_request_still_gets_the_response() -> None:
    app = App()
    release = threading.Event()

    @app.route("/slow", blocking=True)
    def slow(request: Request) -> str:
        release.wait(10)
        return "late"

    with Harness(app) as h:
        h.send(b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n")
        h.half_close()
        assert not h.conn.closed
        release.set()
        deadline = time.monotonic() + 10
        while not h.conn.closed and time.monotonic() < deadline:
            h.loop.run_once(0.05)
            h.spin()
        (response,) = h.responses()
        assert response.body == b"late"
        assert h.conn.closed


def test_pipelined_blocking_requests_run_one_at_a_time_and_none_after_a_close() -> None:
    """RFC 9112 9.3.2: pipelined requests with unsafe methods must not run in parallel;
    9.6: none may run after a response that closes the connection. A connection's
    blocking handlers run one at a time, in order, and those queued behind a closing
    response never run."""
    app = App()
    running = [0, 0]  # now, peak
    executed: list[bytes] = []
    lock = threading.Lock()

    @app.route("/charge", methods=["POST"], blocking=True)
    def charge(request: Request) -> Response:
        with lock:
            running[0] += 1
            running[1] = max(running)
        time.sleep(0.01)
        executed.append(request.body or b"")
        with lock:
            running[0] -= 1
        close = request.body == b"1"
        return Response("charged", headers={"Connection": "close"} if close else None)

    with Harness(app) as h:
        h.send(
            b"".join(
                b"POST /charge HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\n\r\n%d" % i
                for i in range(4)
            )
        )
        h.spin_until(lambda: h.eof)
        assert [r.body for r in h.responses()] == [b"charged", b"charged"]
        assert executed == [b"0", b"1"], "nothing runs after the closing response"
        assert running[1] == 1, "never two at once"


def test_half_close_after_a_pipelined_burst_still_answers_every_request() -> None:
    """``printf requests | nc``: many pipelined requests, then FIN. Parsing pauses when
    responses pile up, so the FIN arrives while requests are held unparsed; each one
    must still be answered before the connection closes."""
    app, release = gated_slow_app()
    with Harness(app, Limits(max_pending_responses=4)) as h:
        h.send(b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n" * 20)  # parsed at once: parsing pauses
        h.send(b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n" * 20)  # held unparsed in conn.input
        assert h.protocol.paused and len(h.conn.input)
        h.client.shutdown(socket.SHUT_WR)
        h.spin()
        release.set()
        h.spin_until(lambda: h.eof)
        assert [r.body for r in h.responses()] == [b"slow"] * 40
        assert h.eof


def test_graceful_shutdown_closes_idle_and_finishes_in_flight() -> None:
    with Harness() as idle:
        idle.send(GET)
        idle.take()
        idle.handler.on_shutdown(idle.conn)
        idle.spin()
        assert idle.conn.closed
    with Harness() as busy:
        busy.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n\r\nab")
        busy.handler.on_shutdown(busy.conn)
        busy.spin()
        assert not busy.conn.closed  # a request is in flight
        busy.send(b"cd")
        (response,) = busy.responses()
        assert (response.body, response.header("connection")) == (b"abcd", "close")


def test_pool_response_after_an_earlier_close_is_dropped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Two blocking requests; the first answers with Connection: close. The second,
    finishing later and asking to close too, is dropped without error."""
    app = App()
    gates = {"a": threading.Event(), "b": threading.Event()}

    @app.route("/{name}", blocking=True)
    def gated(request: Request) -> Response:
        gates[request.params["name"]].wait(10)
        return Response(request.params["name"], headers={"Connection": "close"})

    with Harness(app) as h:
        h.send(b"GET /a HTTP/1.1\r\nHost: t\r\n\r\nGET /b HTTP/1.1\r\nHost: t\r\n\r\n")
        for name in ("a", "b"):
            gates[name].set()
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and (name == "a" and not h.received):
                h.loop.run_once(0.05)
                h.spin()
        h.loop.run_once(0.2)
        h.spin()
        assert [r.body for r in h.responses()] == [b"a"]
        assert h.protocol.phase == LINGER
        assert not h.protocol.queue.pending
    assert not [r for r in caplog.records if r.levelname == "ERROR"]


def test_host_is_required_once_in_1_1_and_counted_per_request() -> None:
    """HTTP/1.0 may omit Host; a Host field in a chunked body's trailer does not count
    for the next request (which has its own, once)."""
    with Harness() as h:
        h.send(b"GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        h.send(
            b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"3\r\nabc\r\n0\r\nHost: trailer\r\n\r\n" + GET
        )
        assert [r.status for r in h.responses()] == [200, 200, 200]
        assert not h.eof


def test_trailer_fields_never_reach_the_next_request() -> None:
    """Trailers of a chunked body are dropped, not taken as the next request's fields."""
    with Harness() as h:
        h.send(
            b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"4\r\nWiki\r\n0\r\nX-Trailer: t\r\nExpect: nothing\r\n\r\n"
            b"GET /echo HTTP/1.1\r\nHost: h\r\n\r\n"
        )
        post, get = h.responses()
        assert (post.status, post.body) == (200, b"Wiki")
        assert (get.status, get.body) == (200, b"GET /echo HTTP/1.1\nHost: h\n")
        assert not h.eof


def test_bytes_answer_on_the_short_path_and_the_general_one() -> None:
    app = App()
    app.add_route("/raw", lambda request: b"\x00\x01binary")
    with Harness(app) as h:
        h.send(b"GET /raw HTTP/1.1\r\nHost: t\r\n\r\n" + b"GET /raw?q HTTP/1.0\r\n\r\n")
        short, general = h.responses()
        for response in (short, general):
            assert response.status == 200 and response.body == b"\x00\x01binary"
            assert response.header("content-type") == "application/octet-stream"
            assert response.header("content-length") == "8"
            assert response.header("server") == "ioreactor" and response.header("date")
        assert short.header("connection") is None
        assert general.header("connection") == "close"
