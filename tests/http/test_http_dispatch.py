"""The dispatcher seam: what the connection hands an application, and when.

A dispatcher of the test's own (the way an ASGI or WSGI server will plug in) sees the
requests, body chunks and ends in order, answers now or later in order, and can hand
the connection over after a response. The native App's handlers never run inside a
parser callback.
"""

from __future__ import annotations

import inspect
import threading

from http_support import Harness

from ioreactor.http.app import App
from ioreactor.http.dispatch import LATER, Dispatcher
from ioreactor.http.protocol import HttpProtocol
from ioreactor.http.request import Request
from ioreactor.http.response import Response
from ioreactor.http.response_queue import Slot
from ioreactor.net.buffer import Buffer
from ioreactor.net.connection import TcpConnection
from ioreactor.net.handlers import Handler
from support.http import parse_responses


class Upper(Handler):
    """The protocol a connection is handed to: answers each piece upper-cased."""

    def __init__(self) -> None:
        self.connected: list[TcpConnection] = []

    def on_connection(self, conn: TcpConnection) -> None:
        self.connected.append(conn)

    def on_message(self, conn: TcpConnection, buffer: Buffer) -> None:
        conn.send(buffer.read_all().upper())


class Recording(Dispatcher):
    """Records every call; ``/later`` is answered when the test says, ``/switch`` with
    101 and a hand-over to :class:`Upper`, anything else at once."""

    server_name = "recording"

    def __init__(self) -> None:
        self.calls: list[tuple[str, object]] = []
        self.later: list[Slot] = []
        self.successor = Upper()

    def request(self, protocol: HttpProtocol, request: Request) -> object:
        self.calls.append(("request", request.target))
        if request.body is None:
            return LATER  # answered at its end
        if request.target == "/later":
            self.later.append(protocol.queue.reserve(request))
            return LATER
        if request.target == "/switch":
            switch = Response(status=101, headers={"Upgrade": "upper"})
            protocol.hand_over(request, switch, self.successor)
            return LATER
        return f"now {request.target}"

    def body(self, protocol: HttpProtocol, chunk: bytes) -> None:
        self.calls.append(("body", chunk))

    def end(self, protocol: HttpProtocol, request: Request) -> object:
        self.calls.append(("end", request.target))
        return "ended"


def get(target: str) -> bytes:
    return b"GET %s HTTP/1.1\r\nHost: t\r\n\r\n" % target.encode()


def test_a_dispatcher_gets_requests_chunks_and_ends_in_order() -> None:
    dispatcher = Recording()
    with Harness(dispatcher) as h:
        h.send(
            get("/a")
            + b"POST /b HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
            + b"2\r\nxy\r\n1\r\nz\r\n0\r\n\r\n"
            + get("/c")
        )
        assert dispatcher.calls == [
            ("request", "/a"),
            ("request", "/b"),
            ("body", b"xy"),
            ("body", b"z"),
            ("end", "/b"),
            ("request", "/c"),
        ]
        responses = h.responses()
        assert [r.body for r in responses] == [b"now /a", b"ended", b"now /c"]
        assert responses[0].header("server") == "recording"


def test_answers_that_come_later_keep_their_place() -> None:
    dispatcher = Recording()
    with Harness(dispatcher) as h:
        h.send(get("/later") + get("/a") + get("/later") + get("/b"))
        assert h.take() == b""  # everything waits behind the first answer
        first, second = dispatcher.later
        h.protocol.queue.fill(second, "second")
        h.spin()
        assert h.take() == b""
        h.protocol.queue.fill(first, "first")
        h.spin()
        assert [r.body for r in h.responses()] == [b"first", b"now /a", b"second", b"now /b"]


def test_the_connection_is_handed_over_after_its_response() -> None:
    """The hand-over waits for the responses before it; the successor gets the
    connection and what the client sends after the 101."""
    dispatcher = Recording()
    with Harness(dispatcher) as h:
        h.send(get("/later") + get("/switch"))
        assert h.take() == b"" and not dispatcher.successor.connected
        (slot,) = dispatcher.later
        h.protocol.queue.fill(slot, "before the switch")
        h.spin()
        data = h.take()
        at = data.index(b"HTTP/1.1 101 ")  # (a response parser stops at a 101)
        (before,) = parse_responses(data[:at])
        assert before.body == b"before the switch"
        assert data[at:].endswith(b"\r\nUpgrade: upper\r\n\r\n")
        assert dispatcher.successor.connected == [h.conn]
        assert h.conn.context is None and h.conn.handler is dispatcher.successor
        h.send(b"not http any more")
        assert h.take() == b"NOT HTTP ANY MORE"
        assert not h.eof


def test_input_that_arrives_before_the_hand_over_goes_to_the_successor() -> None:
    dispatcher = Recording()
    with Harness(dispatcher) as h:
        h.send(get("/later") + get("/switch"))
        h.send(b"early")  # the 101 has not gone out: held, not parsed, not dropped
        (slot,) = dispatcher.later
        h.protocol.queue.fill(slot, "x")
        h.spin()
        assert h.take().endswith(b"\r\n\r\nEARLY")


def test_app_handlers_never_run_inside_a_parser_callback() -> None:
    """Every kind of route runs after the parser has returned: none of the parser's
    callbacks is on the stack of a handler, a body consumer or a pool handler."""
    app = App()
    stacks: list[list[str]] = []
    done = threading.Event()

    def record() -> None:
        stacks.append([f.function for f in inspect.stack() if f.filename.endswith("parser.py")])

    @app.route("/plain")
    def plain(request: Request) -> str:
        record()
        return "plain"

    @app.route("/param/{x}", methods=["POST"])
    def param(request: Request) -> str:
        record()
        return "param"

    class Consumer:
        def on_data(self, chunk: bytes) -> None:
            record()

        def on_end(self) -> str:
            record()
            return "streamed"

    @app.route("/stream", methods=["POST"], stream_body=True)
    def stream(request: Request) -> Consumer:
        record()
        return Consumer()

    @app.route("/pool", blocking=True)
    def pool(request: Request) -> str:
        done.set()
        return "pool"

    with Harness(app) as h:
        h.send(
            get("/plain")
            + b"POST /param/1 HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\n\r\nx"
            + b"POST /stream HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nab"
            + get("/pool")
        )
        h.spin_until(lambda: len(h.responses()) == 4)
        assert [r.body for r in h.responses()] == [b"plain", b"param", b"streamed", b"pool"]
    assert len(stacks) == 5
    assert stacks == [[]] * 5, "a handler ran inside a parser callback"


def test_a_streamed_body_parsed_with_its_head_reaches_the_consumer_in_order() -> None:
    """Head and body in one read: the handler runs first (after the parse), then its
    consumer gets every chunk parsed with the head, then the end."""
    app = App()
    order: list[str] = []

    class Collect:
        def on_data(self, chunk: bytes) -> None:
            order.append(f"data {chunk.decode()}")

        def on_end(self) -> str:
            order.append("end")
            return "ok"

    @app.route("/up", methods=["PUT"], stream_body=True)
    def upload(request: Request) -> Collect:
        order.append("handler")
        return Collect()

    with Harness(app) as h:
        h.send(
            b"PUT /up HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
        )
        (response,) = h.responses()
        assert response.body == b"ok"
    assert order == ["handler", "data abc", "data de", "end"]
