"""ASGI WebSocket over real sockets: the events to the spec, subprotocols, denial, close
codes kept exactly, permessage-deflate, and every protocol violation closed with the
RFC's code before the application sees it (the codec's session runs the connection).

Clients: the ``websockets`` library for what a correct client does, and the hand-built
peer of ``tests/support/websocket_peer.py`` for what no correct client would send."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest
import websockets.sync.client as ws_client
from websockets.exceptions import ConnectionClosed, InvalidStatus

from ioreactor.codec.websocket_session import CLOSE_TIMEOUT
from ioreactor.http.asgi import WebSocketOptions
from support.asgi import TIMEOUT, AsgiThread, Receive, Scope, Send
from support.websocket_peer import (
    BINARY,
    CLOSE,
    CONTINUATION,
    PING,
    RSV1,
    TEXT,
    RawClient,
    build_frame,
    close_payload,
)


class Recorder:
    """An echo application that records what it receives (and the scope)."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.scopes: list[Scope] = []
        self.ended = threading.Event()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "websocket":
            return
        self.scopes.append(scope)
        assert (await receive()) == {"type": "websocket.connect"}
        path = scope["path"]
        if path == "/deny":
            await send({"type": "websocket.close"})
            return
        if path == "/teapot":
            await send(
                {
                    "type": "websocket.http.response.start",
                    "status": 418,
                    "headers": [(b"content-type", b"text/plain")],
                }
            )
            await send({"type": "websocket.http.response.body", "body": b"no tea"})
            return
        subprotocol = "chat" if "chat" in scope["subprotocols"] else None
        await send(
            {"type": "websocket.accept", "subprotocol": subprotocol, "headers": [(b"x-hi", b"1")]}
        )
        try:
            while True:
                message = await receive()
                self.messages.append(dict(message))
                if message["type"] == "websocket.disconnect":
                    return
                text = message.get("text")
                if text == "close-custom":
                    await send({"type": "websocket.close", "code": 4123, "reason": "custom bye"})
                elif text == "raise":
                    raise ValueError("app bug")
                elif text == "return":
                    return
                elif text is not None:
                    await send({"type": "websocket.send", "text": text})
                else:
                    await send({"type": "websocket.send", "bytes": message["bytes"]})
        finally:
            self.ended.set()


@pytest.fixture
def app() -> Recorder:
    return Recorder()


def url(server: AsgiThread, path: str = "/ws") -> str:
    return f"ws://127.0.0.1:{server.port}{path}"


def test_echo_subprotocol_headers_and_the_scope(app: Recorder) -> None:
    with AsgiThread(app) as server:
        with ws_client.connect(url(server, "/ws?q=1"), subprotocols=["chat"]) as ws:
            assert ws.subprotocol == "chat"
            assert ws.response.headers["x-hi"] == "1"
            ws.send("hello")
            assert ws.recv(TIMEOUT) == "hello"
            ws.send(b"\x00\x01")
            assert ws.recv(TIMEOUT) == b"\x00\x01"
        assert app.ended.wait(TIMEOUT)
    (scope,) = app.scopes
    assert scope["type"] == "websocket" and scope["scheme"] == "ws"
    assert scope["path"] == "/ws" and scope["query_string"] == b"q=1"
    assert scope["subprotocols"] == ["chat"]
    assert "method" not in scope
    assert "websocket.http.response" in scope["extensions"]
    assert app.messages[-1] == {"type": "websocket.disconnect", "code": 1000, "reason": ""}


def test_close_codes_travel_exactly_as_sent(app: Recorder) -> None:
    """Custom codes both ways (granian#645 loses them)."""
    with AsgiThread(app) as server:
        with ws_client.connect(url(server)) as ws:
            ws.send("close-custom")
            with pytest.raises(ConnectionClosed) as closed:
                ws.recv(TIMEOUT)
            assert closed.value.rcvd is not None
            assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (4123, "custom bye")
        with ws_client.connect(url(server)) as ws:
            ws.close(4321, "client bye")
        assert app.ended.wait(TIMEOUT)
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline and app.messages[-1].get("code") != 4321:
            time.sleep(0.02)
    assert app.messages[-1] == {
        "type": "websocket.disconnect",
        "code": 4321,
        "reason": "client bye",
    }


@pytest.mark.parametrize(
    ("path", "status", "body"), [("/deny", 403, b"Forbidden\n"), ("/teapot", 418, b"no tea")]
)
def test_a_denied_handshake_is_an_http_response(
    app: Recorder, path: str, status: int, body: bytes
) -> None:
    with AsgiThread(app) as server, pytest.raises(InvalidStatus) as refused:
        ws_client.connect(url(server, path), open_timeout=TIMEOUT)
    assert refused.value.response.status_code == status
    assert refused.value.response.body == body


@pytest.mark.parametrize(("text", "code"), [("raise", 1011), ("return", 1000)])
def test_an_application_that_ends_closes_its_socket(app: Recorder, text: str, code: int) -> None:
    with AsgiThread(app) as server, ws_client.connect(url(server)) as ws:
        ws.send(text)
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(TIMEOUT)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == code


def test_permessage_deflate_with_the_websockets_client(app: Recorder) -> None:
    with AsgiThread(app) as server, ws_client.connect(url(server), compression="deflate") as ws:
        assert "permessage-deflate" in ws.response.headers["sec-websocket-extensions"]
        message = "compress me " * 1000
        ws.send(message)
        assert ws.recv(TIMEOUT) == message


def test_an_invalid_handshake_never_reaches_the_application(app: Recorder) -> None:
    with AsgiThread(app) as server, RawClient(server.port) as client:
        client.send(client.request("Sec-WebSocket-Version: 8"))
        status, fields, _ = client.read_head()
    assert status == 426 and fields["sec-websocket-version"] == "13"
    assert not app.scopes


VIOLATIONS = [
    ("unmasked frame", build_frame(TEXT, b"hi", mask=False), 1002),
    ("reserved bit without an extension", build_frame(TEXT, b"hi", rsv=RSV1), 1002),
    ("reserved opcode", build_frame(0x3, b"hi"), 1002),
    ("control frame over 125 bytes", build_frame(PING, b"x" * 126), 1002),
    ("fragmented control frame", build_frame(PING, b"x", fin=False), 1002),
    ("continuation without a start", build_frame(CONTINUATION, b"x"), 1002),
    ("invalid UTF-8 text", build_frame(TEXT, b"\xff\xfe"), 1007),
    ("frame over the limit", build_frame(BINARY, b"", length=1 << 30), 1009),
    (
        "message over the limit in fragments",
        build_frame(BINARY, b"x" * 40_000, fin=False) + build_frame(CONTINUATION, b"x" * 40_000),
        1009,
    ),
]


@pytest.mark.parametrize(
    ("data", "code"), [v[1:] for v in VIOLATIONS], ids=[v[0] for v in VIOLATIONS]
)
def test_every_violation_closes_with_its_code(app: Recorder, data: bytes, code: int) -> None:
    options = WebSocketOptions(max_message_size=64 * 1024, deflate=None)
    with AsgiThread(app, websocket=options) as server, RawClient(server.port) as client:
        client.handshake()
        client.send(data)
        assert client.expect_close()[0] == code
        assert app.ended.wait(CLOSE_TIMEOUT / 2)  # when this end failed it
    assert app.messages[-1]["type"] == "websocket.disconnect"
    assert all(m["type"] == "websocket.disconnect" for m in app.messages)  # nothing leaked


def test_a_client_that_never_finishes_the_close_is_cut_off(app: Recorder) -> None:
    options = WebSocketOptions(close_timeout=0.3)
    with AsgiThread(app, websocket=options) as server, RawClient(server.port) as client:
        client.handshake()
        client.send(build_frame(TEXT, b"close-custom"))
        frame = client.recv_frame()
        assert frame is not None and frame.opcode == CLOSE
        started = time.monotonic()
        assert client.read_to_eof() == b""  # no close frame from us: the server ends it
        assert time.monotonic() - started < 0.3 + 2.0


def test_the_client_close_is_echoed_and_reported(app: Recorder) -> None:
    with AsgiThread(app) as server, RawClient(server.port) as client:
        client.handshake()
        client.send(build_frame(CLOSE, close_payload(3001, b"done")))
        assert client.expect_close() == (3001, b"done")
        # at the close frame, not when the client's FIN comes (it has not sent one)
        assert app.ended.wait(CLOSE_TIMEOUT / 2)
    assert app.messages[-1] == {"type": "websocket.disconnect", "code": 3001, "reason": "done"}


def test_a_slow_application_stops_the_reading() -> None:
    """Messages the application does not take pile up only to a bound; then the
    connection stops reading (the client's sends back up in its own buffers)."""
    release = threading.Event()
    got: list[int] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "websocket":
            return
        await receive()
        await send({"type": "websocket.accept"})
        while not release.is_set():
            await asyncio.sleep(0.02)
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            got.append(len(message["bytes"]))
            if len(got) == 2000:
                await send({"type": "websocket.close"})

    with AsgiThread(app) as server, RawClient(server.port) as client:
        client.handshake()
        client.sock.settimeout(1.0)
        frame = build_frame(BINARY, b"x" * 16384)
        sent = 0
        try:
            while sent < 2000:
                client.sock.sendall(frame)
                sent += 1
        except TimeoutError:
            pass
        assert sent < 2000, "the server took every message without the application"
        release.set()
        client.sock.settimeout(TIMEOUT)
        for _ in range(2000 - sent):
            client.sock.sendall(frame)
        assert client.expect_close()[0] == 1000
    assert got == [16384] * 2000


def test_frames_sent_with_the_handshake_reach_the_session(app: Recorder) -> None:
    """llhttp stops at the Upgrade request: the frames in the same packet are the
    WebSocket's, kept for the session until the application accepts."""
    with AsgiThread(app) as server, RawClient(server.port) as client:
        client.send(client.request() + build_frame(TEXT, b"early") + build_frame(TEXT, b"bird"))
        status, _, rest = client.read_head()
        assert status == 101
        client.frames.extend(client.reader.feed(rest))
        first, second = client.recv_frame(), client.recv_frame()
        assert first is not None and first.payload == b"early"
        assert second is not None and second.payload == b"bird"


async def forgetful(scope: Scope, receive: Receive, send: Send) -> None:
    """Accepts and reads until the end, keeping nothing."""
    if scope["type"] == "websocket":
        await receive()
        await send({"type": "websocket.accept"})
        while (await receive())["type"] != "websocket.disconnect":
            pass


def test_violations_leave_no_memory_behind() -> None:
    """Peers announcing a 1 GiB frame, or sending invalid text, over and over: each is
    closed with its code before a byte of payload is held, and nothing accumulates."""
    import gc
    import tracemalloc

    def round_of(n: int) -> None:
        for i in range(n):
            with RawClient(server.port) as client:
                client.handshake()
                bad = (
                    build_frame(BINARY, b"", length=1 << 30)
                    if i % 2
                    else build_frame(TEXT, b"\xff" * 100)
                )
                client.send(bad)
                assert client.expect_close()[0] in (1009, 1007)

    options = WebSocketOptions(max_message_size=64 * 1024)
    with AsgiThread(forgetful, websocket=options) as server:
        round_of(20)  # warm: caches, the wheel, the loop's buffers
        time.sleep(0.2)
        gc.collect()
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            round_of(100)
            time.sleep(0.2)
            gc.collect()
            grown = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
    assert grown < 100 * 1024, f"{grown} bytes left after 100 violating peers"
