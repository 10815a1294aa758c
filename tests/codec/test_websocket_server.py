"""WebSocketHandler on a real TcpServer, every backend: a real ``websockets`` asyncio
client over loopback, hand-written hostile clients (each bad input closes with the RFC's
code and no memory growth), handshake refusals, and every timeout."""

from __future__ import annotations

import asyncio
import socket
import time
import zlib
from collections.abc import Iterator

import pytest
from websockets.asyncio.client import connect

from ioreactor.codec.websocket_deflate import DeflateConfig
from ioreactor.codec.websocket_handshake import HandshakeError, UpgradeRequest
from ioreactor.codec.websocket_session import (
    CloseTimeoutError,
    PeerSilentError,
    WebSocketHandler,
    WebSocketSession,
)
from ioreactor.net.buffer import Buffer
from ioreactor.net.connection import TcpConnection
from ioreactor.net.server import TcpServer
from ioreactor.testing import LoopThread
from support.websocket_peer import (
    BINARY,
    CLOSE,
    CONTINUATION,
    LIVENESS,
    PING,
    RSV1,
    RSV3,
    TEXT,
    RawClient,
    build_frame,
    close_payload,
)

#: Timeouts of the servers under test: short, so the tests that wait for them are quick.
CLOSE_TIMEOUT = 0.5
HANDSHAKE_TIMEOUT = 0.5


class Echo(WebSocketHandler):
    """Echoes messages; ``close <code> <reason>`` makes the server close; ``boom`` raises.
    Records how each connection ended and the largest input buffer it saw."""

    def __init__(self, **options: object) -> None:
        options.setdefault("close_timeout", CLOSE_TIMEOUT)
        options.setdefault("handshake_timeout", HANDSHAKE_TIMEOUT)
        super().__init__(**options)  # type: ignore[arg-type]
        self.ended: list[tuple[int, str, BaseException | None]] = []
        self.largest_input = 0

    def on_message(self, conn: TcpConnection, buffer: Buffer) -> None:
        self.largest_input = max(self.largest_input, buffer.capacity)
        super().on_message(conn, buffer)

    def on_request(self, conn: TcpConnection, request: UpgradeRequest) -> None:
        if request.target == "/forbidden":
            raise HandshakeError("not here", 404)

    def on_text(self, session: WebSocketSession, data: str) -> None:
        if data.startswith("close "):
            _, code, reason = data.split(" ", 2)
            session.close(int(code), reason)
        elif data == "boom":
            raise RuntimeError("application bug")
        else:
            session.send_text(data)

    def on_binary(self, session: WebSocketSession, data: bytes) -> None:
        session.send_binary(data)

    def on_disconnect(self, session: WebSocketSession, code: int, reason: str) -> None:
        self.ended.append((code, reason, session.error))


class Served:
    def __init__(self, loop_thread: LoopThread, handler: Echo) -> None:
        self.loop_thread = loop_thread
        self.handler = handler
        self.server = loop_thread.call(
            lambda: TcpServer(loop_thread.loop, "127.0.0.1:0", handler).start()
        )
        self.port = self.server.port

    def wait_ended(self, count: int = 1) -> list[tuple[int, str, BaseException | None]]:
        assert self.loop_thread.wait_until(lambda: len(self.handler.ended) >= count, LIVENESS)
        return self.handler.ended


@pytest.fixture
def served(loop_thread: LoopThread) -> Iterator[Served]:
    yield Served(loop_thread, Echo())


# -- a real client -----------------------------------------------------------------------


async def conversation(port: int, compression: str | None) -> tuple[int | None, str | None]:
    megabyte = bytes(range(256)) * 4096
    async with connect(
        f"ws://127.0.0.1:{port}/", compression=compression, max_size=2 << 20, ping_interval=None
    ) as ws:
        await ws.send("héllo wörld")
        assert await ws.recv() == "héllo wörld"
        await ws.send(b"\x00\x01\x02")
        assert await ws.recv() == b"\x00\x01\x02"
        await ws.send(["frag", "ment", "ed €"])
        assert await ws.recv() == "fragmented €"
        await ws.send([b"ab", b"cd"])
        assert await ws.recv() == b"abcd"
        await ws.send(megabyte)
        assert await ws.recv() == megabyte
        text = "x€" * (1 << 18)  # 1 MiB of UTF-8 (each "x€" is 4 bytes)
        await ws.send(text)
        assert await ws.recv() == text
        latency = await (await ws.ping(b"are you there"))
        assert latency >= 0
        await ws.close(4123, "custom reason")
        return ws.close_code, ws.close_reason


@pytest.mark.parametrize("compression", [None, "deflate"])
def test_websockets_client_echo_and_custom_close(
    loop_thread: LoopThread, compression: str | None
) -> None:
    served = Served(loop_thread, Echo(deflate=DeflateConfig()))
    code, reason = asyncio.run(asyncio.wait_for(conversation(served.port, compression), LIVENESS))
    assert (code, reason) == (4123, "custom reason"), "the echo of our close came back"
    assert served.wait_ended() == [(4123, "custom reason", None)], "arrived exactly as sent"


def test_incompressible_megabyte_through_deflate(loop_thread: LoopThread) -> None:
    """1 MiB of random bytes grows when compressed; the frame limit leaves room for it."""
    served = Served(loop_thread, Echo(deflate=DeflateConfig()))
    payload = bytes(i * 7919 % 251 for i in range(1 << 20))

    async def run() -> None:
        async with connect(f"ws://127.0.0.1:{served.port}/", max_size=2 << 20) as ws:
            await ws.send(payload)
            assert await ws.recv() == payload

    asyncio.run(asyncio.wait_for(run(), LIVENESS))


def test_server_initiated_close_with_a_custom_code(served: Served) -> None:
    async def run() -> tuple[int | None, str | None]:
        async with connect(f"ws://127.0.0.1:{served.port}/") as ws:
            await ws.send("close 4999 server says bye")
            await ws.wait_closed()
            return ws.close_code, ws.close_reason

    assert asyncio.run(asyncio.wait_for(run(), LIVENESS)) == (4999, "server says bye")
    assert served.wait_ended() == [(4999, "server says bye", None)]


def test_subprotocol_negotiated_with_a_real_client(loop_thread: LoopThread) -> None:
    served = Served(loop_thread, Echo(subprotocols=["v2.chat", "v1.chat"]))

    async def run() -> str | None:
        async with connect(
            f"ws://127.0.0.1:{served.port}/",
            subprotocols=["v1.chat", "v2.chat"],  # type: ignore[list-item]
        ) as ws:
            return ws.subprotocol

    assert asyncio.run(asyncio.wait_for(run(), LIVENESS)) == "v2.chat"


# -- bad input: the RFC's close code, then the end ---------------------------------------

BAD_INPUT = [
    pytest.param(build_frame(TEXT, b"hi", mask=False), 1002, id="unmasked-client-frame"),
    pytest.param(build_frame(TEXT, b"\xce\xbax\xff"), 1007, id="invalid-utf8"),
    pytest.param(
        build_frame(TEXT, "κό".encode(), fin=False) + build_frame(CONTINUATION, b"\xed\xa0\x80"),
        1007,
        id="invalid-utf8-across-fragments",
    ),
    pytest.param(build_frame(PING, b"x" * 126), 1002, id="control-over-125"),
    pytest.param(build_frame(PING, b"x", fin=False), 1002, id="fragmented-control"),
    pytest.param(build_frame(TEXT, b"x", rsv=RSV1), 1002, id="rsv1-without-deflate"),
    pytest.param(build_frame(BINARY, b"x", rsv=RSV3), 1002, id="rsv3"),
    pytest.param(build_frame(0x5, b"x"), 1002, id="reserved-opcode"),
    pytest.param(build_frame(CONTINUATION, b"x"), 1002, id="continuation-without-start"),
    pytest.param(build_frame(CLOSE, close_payload(1005)), 1002, id="close-code-1005"),
    pytest.param(build_frame(BINARY, b"", length=1 << 40)[:14], 1009, id="oversized-frame"),
    pytest.param(
        build_frame(BINARY, b"a" * 60000, fin=False) + build_frame(CONTINUATION, b"b" * 60000),
        1009,
        id="oversized-message",
    ),
]


@pytest.mark.parametrize(("frames", "code"), BAD_INPUT)
def test_bad_input_closes_with_its_code(loop_thread: LoopThread, frames: bytes, code: int) -> None:
    served = Served(loop_thread, Echo(max_message_size=100_000))
    with RawClient(served.port) as client:
        client.handshake()
        client.send(build_frame(TEXT, b"fine"))
        assert client.recv_frame().payload == b"fine"  # type: ignore[union-attr]
        client.send(frames)
        close_code, _ = client.expect_close()
    assert close_code == code
    [(ended_code, _, error)] = served.wait_ended()
    assert ended_code == 1006, "the peer never sent a close frame"
    assert getattr(error, "code", None) == code


def test_oversized_frame_streamed_after_its_header_costs_no_memory(loop_thread: LoopThread) -> None:
    """A client announcing a 1 TiB frame and sending 16 MiB of it: refused at the header
    (1009); what follows is read and dropped, never buffered."""
    served = Served(loop_thread, Echo())
    with RawClient(served.port) as client:
        client.handshake()
        client.send(build_frame(BINARY, b"", length=1 << 40)[:14])
        chunk = b"\xaa" * (1 << 20)
        for _ in range(16):
            client.send(chunk)
        close_code, _ = client.expect_close()
    assert close_code == 1009
    assert served.handler.largest_input < 1 << 20, served.handler.largest_input


def test_decompression_bomb_is_refused(loop_thread: LoopThread) -> None:
    served = Served(loop_thread, Echo(deflate=DeflateConfig()))
    compressor = zlib.compressobj(9, zlib.DEFLATED, -12)
    bomb = (compressor.compress(bytes(64 << 20)) + compressor.flush(zlib.Z_SYNC_FLUSH))[:-4]
    with RawClient(served.port) as client:
        fields = client.handshake(
            "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits"
        )
        assert fields["sec-websocket-extensions"].startswith("permessage-deflate")
        client.send(build_frame(BINARY, bomb, rsv=RSV1))
        assert client.expect_close()[0] == 1009
    assert served.handler.largest_input < 2 << 20


def test_client_that_never_completes_the_close_handshake(served: Served) -> None:
    with RawClient(served.port) as client:
        client.handshake()
        client.send(build_frame(TEXT, b"close 4000 go away"))
        frame = client.recv_frame()
        assert frame is not None and frame.close_code() == (4000, b"go away")
        start = time.monotonic()
        assert client.read_to_eof() == b""  # we never answer: the server closes anyway
        waited = time.monotonic() - start
    assert CLOSE_TIMEOUT * 0.8 <= waited < CLOSE_TIMEOUT + 5, waited
    [(code, _, error)] = served.wait_ended()
    assert code == 1006 and isinstance(error, CloseTimeoutError)


def test_silent_peer_is_pinged_then_closed_1011(loop_thread: LoopThread) -> None:
    served = Served(loop_thread, Echo(ping_interval=0.3, ping_timeout=0.3))
    with RawClient(served.port) as client:
        client.handshake()
        start = time.monotonic()
        ping = client.recv_frame()
        assert ping is not None and ping.opcode == PING
        assert time.monotonic() - start >= 0.25
        assert client.expect_close() == (1011, b"keepalive ping timeout")
    [(_, _, error)] = served.wait_ended()
    assert isinstance(error, PeerSilentError)


def test_answering_pings_keeps_the_connection(loop_thread: LoopThread) -> None:
    served = Served(loop_thread, Echo(ping_interval=0.2, ping_timeout=0.2))
    with RawClient(served.port) as client:
        client.handshake()
        for _ in range(4):
            ping = client.recv_frame()
            assert ping is not None and ping.opcode == PING
            client.send(build_frame(0xA, ping.payload))
        client.send(build_frame(TEXT, b"still here"))
        assert client.recv_frame().payload == b"still here"  # type: ignore[union-attr]
    assert served.wait_ended()[0][0] == 1006


def test_application_error_closes_1011_and_spares_other_connections(served: Served) -> None:
    with RawClient(served.port) as bystander, RawClient(served.port) as client:
        bystander.handshake()
        client.handshake()
        client.send(build_frame(TEXT, b"boom"))
        assert client.expect_close()[0] == 1011
        bystander.send(build_frame(TEXT, b"ok"))
        assert bystander.recv_frame().payload == b"ok"  # type: ignore[union-attr]


def test_frames_sent_right_behind_the_request(served: Served) -> None:
    with RawClient(served.port) as client:
        client.send(client.request() + build_frame(TEXT, b"eager") + build_frame(BINARY, b"\x01"))
        status, _, rest = client.read_head()
        assert status == 101
        client.frames.extend(client.reader.feed(rest))
        assert client.recv_frame().payload == b"eager"  # type: ignore[union-attr]
        assert client.recv_frame().payload == b"\x01"  # type: ignore[union-attr]


class Ordered(Echo):
    """Records every hook call in order."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    def on_text(self, session: WebSocketSession, data: str) -> None:
        self.calls.append(f"text {data}")
        super().on_text(session, data)

    def on_disconnect(self, session: WebSocketSession, code: int, reason: str) -> None:
        self.calls.append(f"disconnect {code}")
        super().on_disconnect(session, code, reason)


def test_messages_before_the_close_are_delivered_before_the_disconnect(
    loop_thread: LoopThread,
) -> None:
    """The server starts the close; the peer's last messages and its close arrive in one
    read: every message is delivered, then the disconnect."""
    handler = Ordered()
    served = Served(loop_thread, handler)
    with RawClient(served.port) as client:
        client.handshake()
        client.send(build_frame(TEXT, b"close 4100 please"))
        frame = client.recv_frame()
        assert frame is not None and frame.close_code() == (4100, b"please")
        client.send(
            build_frame(TEXT, b"last 1")
            + build_frame(TEXT, b"last 2")
            + build_frame(CLOSE, close_payload(4100))
        )
        assert client.read_to_eof() == b""
    served.wait_ended()
    assert handler.calls == [
        "text close 4100 please",
        "text last 1",
        "text last 2",
        "disconnect 4100",
    ]


def test_graceful_shutdown_sends_1001(served: Served) -> None:
    with RawClient(served.port) as client:
        client.handshake()
        served.loop_thread.call(served.server.shutdown)
        frame = client.recv_frame()
        assert frame is not None and frame.close_code()[0] == 1001
        client.send(build_frame(CLOSE, close_payload(1001)))
        assert client.read_to_eof() == b""
    assert served.wait_ended()[0][:2] == (1001, "")


# -- the handshake -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("request_bytes", "status", "field"),
    [
        (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", 426, ("sec-websocket-version", "13")),
        (b"POST / HTTP/1.1\r\nHost: x\r\n\r\n", 405, ("allow", "GET")),
        (b"GET / HTTP/1.1\r\nHost: x\r\nbad line\r\n\r\n", 400, ("connection", "close")),
        (b"GET / HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 20000 + b"\r\n\r\n", 431, None),
        (b"GET / HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 20000, 431, None),
    ],
    ids=["plain-get", "post", "malformed", "oversized-head", "oversized-unterminated"],
)
def test_refused_handshakes(
    served: Served, request_bytes: bytes, status: int, field: tuple[str, str] | None
) -> None:
    with RawClient(served.port) as client:
        client.send(request_bytes)
        got, fields, _ = client.read_head()
        assert got == status
        if field is not None:
            assert fields[field[0]] == field[1]
        client.sock.shutdown(socket.SHUT_WR)
        client.read_to_eof()


def test_wrong_version_gets_426_with_the_supported_one(served: Served) -> None:
    with RawClient(served.port) as client:
        client.send(client.request().replace(b"Version: 13", b"Version: 8"))
        status, fields, _ = client.read_head()
    assert status == 426 and fields["sec-websocket-version"] == "13"


def test_on_request_can_refuse(served: Served) -> None:
    with RawClient(served.port) as client:
        client.send(client.request(path="/forbidden"))
        assert client.read_head()[0] == 404


@pytest.mark.parametrize(
    "sent", [b"", b"GET / HTTP/1.1\r\nHost: x\r\n"], ids=["nothing", "partial"]
)
def test_handshake_timeout(served: Served, sent: bytes) -> None:
    with RawClient(served.port) as client:
        client.send(sent)
        start = time.monotonic()
        assert client.read_to_eof() == b""
        waited = time.monotonic() - start
    assert HANDSHAKE_TIMEOUT * 0.8 <= waited < HANDSHAKE_TIMEOUT + 5, waited
    assert served.loop_thread.wait_until(lambda: len(served.handler) == 0)


def test_many_connections_each_with_its_own_state(served: Served) -> None:
    """Fragmented messages on interleaved connections do not mix."""
    clients = [RawClient(served.port) for _ in range(20)]
    try:
        for c in clients:
            c.handshake()
        for i, c in enumerate(clients):
            c.send(build_frame(TEXT, f"{i}-".encode(), fin=False))
        for i, c in enumerate(clients):
            c.send(build_frame(CONTINUATION, f"{i}".encode()))
        for i, c in enumerate(clients):
            assert c.recv_frame().payload == f"{i}-{i}".encode()  # type: ignore[union-attr]
    finally:
        for c in clients:
            c.sock.close()
    served.wait_ended(20)
    assert served.loop_thread.wait_until(lambda: len(served.handler) == 0)


def test_concurrent_real_clients(served: Served) -> None:
    async def one(i: int) -> None:
        async with connect(f"ws://127.0.0.1:{served.port}/") as ws:
            for j in range(20):
                await ws.send(f"{i}:{j}")
                assert await ws.recv() == f"{i}:{j}"

    async def run() -> None:
        await asyncio.gather(*(one(i) for i in range(10)))

    asyncio.run(asyncio.wait_for(run(), LIVENESS))
    assert [code for code, _, _ in served.wait_ended(10)] == [1000] * 10
