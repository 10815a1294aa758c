"""The native App's ``async def`` routes and ``@app.websocket`` routes, served on
ioreactor.aio's loop (one loop, one thread with asyncio code), over real sockets."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest
import websockets.sync.client as ws_client

from ioreactor.codec.websocket_handshake import HandshakeError, UpgradeRequest
from ioreactor.codec.websocket_session import WebSocketHandler, WebSocketSession
from ioreactor.http import App, HttpHandler, Request
from ioreactor.net.connection import TcpConnection
from support.asgi import TIMEOUT, AioThread


def build_app() -> App:
    app = App()

    @app.route("/sleep/{ms}")
    async def sleep(request: Request) -> str:
        await asyncio.sleep(int(request.params["ms"]) / 1000)
        return f"slept {request.params['ms']}\n"

    @app.route("/sync")
    def sync(request: Request) -> str:
        return "sync\n"

    @app.route("/fails")
    async def fails(request: Request) -> str:
        await asyncio.sleep(0)
        raise ValueError("boom")

    @app.websocket("/echo")
    class Echo(WebSocketHandler):
        def on_request(self, conn: TcpConnection, request: UpgradeRequest) -> None:
            if "deny=1" in request.target:
                raise HandshakeError("not you", 403)

        def on_text(self, session: WebSocketSession, data: str) -> None:
            session.send_text(data.upper())

    return app


def read_until(sock: socket.socket, marker: bytes) -> bytes:
    data = b""
    while marker not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def test_async_routes_are_awaited_and_pipelined_order_is_kept() -> None:
    app = build_app()
    assert HttpHandler(app).needs_asyncio()
    with (
        AioThread(HttpHandler(app)) as server,
        socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as sock,
    ):
        started = time.monotonic()
        sock.sendall(
            b"GET /sleep/300 HTTP/1.1\r\nHost: t\r\n\r\n"
            b"GET /sync HTTP/1.1\r\nHost: t\r\n\r\n"
            b"GET /sleep/10 HTTP/1.1\r\nHost: t\r\n\r\n"
            b"GET /fails HTTP/1.1\r\nHost: t\r\n\r\n"
        )
        data = read_until(sock, b"500 Internal Server Error\n")
        elapsed = time.monotonic() - started
    order = [data.index(m) for m in (b"slept 300", b"sync", b"slept 10", b"500 Internal")]
    assert order == sorted(order)
    assert 0.3 <= elapsed < 5


def test_an_app_without_async_routes_needs_no_asyncio() -> None:
    app = App()
    app.add_route("/", lambda request: "hi")
    assert not HttpHandler(app).needs_asyncio()


def test_async_routes_cannot_be_blocking_or_stream_the_body() -> None:
    app = App()

    async def handler(request: Request) -> str:
        return "x"

    with pytest.raises(ValueError, match="async def"):
        app.add_route("/a", handler, blocking=True)


def test_websocket_routes_switch_after_the_101() -> None:
    with AioThread(HttpHandler(build_app())) as server:
        base = f"ws://127.0.0.1:{server.port}"
        with ws_client.connect(f"{base}/echo") as ws:
            ws.send("hello")
            assert ws.recv(TIMEOUT) == "HELLO"
        with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as sock:
            sock.sendall(b"GET /echo HTTP/1.1\r\nHost: t\r\n\r\n")  # not an Upgrade
            assert read_until(sock, b"\r\n\r\n").startswith(b"HTTP/1.1 426 ")
        with pytest.raises(Exception, match="403"):
            ws_client.connect(f"{base}/echo?deny=1", open_timeout=TIMEOUT)


def test_frames_sent_with_the_handshake_reach_a_websocket_route() -> None:
    from support.websocket_peer import TEXT, RawClient, build_frame

    with AioThread(HttpHandler(build_app())) as server, RawClient(server.port) as client:
        client.send(client.request(path="/echo") + build_frame(TEXT, b"right behind"))
        status, _, rest = client.read_head()
        assert status == 101
        client.frames.extend(client.reader.feed(rest))
        frame = client.recv_frame()
        assert frame is not None and frame.payload == b"RIGHT BEHIND"
