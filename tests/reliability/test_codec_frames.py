"""Length-field frames with forged lengths against a framing server over real sockets.

A forged length must end the connection as soon as its header is readable -- without
waiting for a body that will never come, and without reserving memory for it -- while
the frames before it are answered and every other connection carries on. A Hypothesis
property sends arbitrary bytes and checks the server's answer against the codec run in
memory on the same bytes: the same frames back, and a close exactly when the codec
refuses the stream.
"""

from __future__ import annotations

import logging
import socket
import struct
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reliability_support import TIMEOUT

from ioreactor.codec.base import FrameError
from ioreactor.codec.handler import FrameHandler
from ioreactor.codec.length_field import LengthFieldCodec
from ioreactor.heartbeat import HeartbeatHandler
from ioreactor.net.buffer import Buffer
from ioreactor.net.connection import TcpConnection
from ioreactor.net.server import TcpServer
from ioreactor.testing import LoopThread, read_until_closed

MAX_FRAME = 4096
#: 4-byte length field counting the payload, stripped on decode.
CODEC = LengthFieldCodec(4, initial_bytes_to_strip=4, max_frame_length=MAX_FRAME)
#: 2-byte field that counts itself too: a value below 2 is a negative body.
SELF_COUNTING = LengthFieldCodec(2, length_adjustment=-2, initial_bytes_to_strip=2)


class FrameEcho(FrameHandler):
    """Sends each batch of frames back, encoded; records the largest input it held."""

    def __init__(self, codec: LengthFieldCodec) -> None:
        super().__init__(codec)
        self.frame_codec = codec
        self.closed: list[TcpConnection] = []
        self.most_buffered = 0

    def on_message(self, conn: TcpConnection, buffer: Buffer) -> None:
        self.most_buffered = max(self.most_buffered, len(buffer))
        super().on_message(conn, buffer)

    def on_frames(self, conn: TcpConnection, frames: list[bytes]) -> None:
        conn.send(self.frame_codec.encode_many(frames))

    def on_close(self, conn: TcpConnection) -> None:
        self.closed.append(conn)


@pytest.fixture(scope="module")
def frames_loop() -> Iterator[LoopThread]:
    with LoopThread(name="frames") as lt:
        yield lt


def start(lt: LoopThread, handler: FrameHandler) -> TcpServer:
    return lt.call(TcpServer(lt.loop, ("127.0.0.1", 0), handler).start)


@pytest.mark.parametrize(
    ("codec", "header"),
    [
        (CODEC, struct.pack("!I", 0xFFFFFFFF)),  # 4 GiB
        (CODEC, struct.pack("!I", MAX_FRAME - 3)),  # one byte over the limit
        (SELF_COUNTING, struct.pack("!H", 1)),  # negative body
        (LengthFieldCodec(8, initial_bytes_to_strip=8), b"\xff" * 8),  # 2**64 - 1
    ],
    ids=["4GiB", "max+1", "negative", "2**64-1"],
)
def test_forged_length_closes_at_once_after_the_good_frames(
    frames_loop: LoopThread,
    codec: LengthFieldCodec,
    header: bytes,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="ioreactor")
    handler = FrameEcho(codec)
    server = start(frames_loop, handler)
    good = codec.encode_many([b"first", b"second"])
    with (
        socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as liar,
        socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as honest,
    ):
        liar.sendall(good + header + b"some")  # and then nothing: the body never comes
        data, closed = read_until_closed(liar)
        assert closed, "the server waited for the forged body"
        assert data == good
        honest.sendall(codec.encode(b"still served"))
        assert honest.recv(100) == codec.encode(b"still served")
    assert frames_loop.wait_until(lambda: len(handler.closed) == 2)
    assert isinstance(handler.closed[0].error, FrameError)
    assert handler.most_buffered < 100  # nothing was reserved for the forged length
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1 and "closing connection from" in warnings[0], warnings
    frames_loop.call(server.close)


def test_heartbeat_peer_with_a_forged_frame_is_closed(frames_loop: LoopThread) -> None:
    handler = HeartbeatHandler(interval=60, active=False, max_frame_length=MAX_FRAME)
    server = start(frames_loop, handler)
    for forged in (struct.pack("!IB", 0xFFFFFFFF, 0), struct.pack("!IB", 1, 9)):
        with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as sock:
            sock.sendall(forged)  # a 4 GiB DATA frame; a frame of an unknown type
            _, closed = read_until_closed(sock)
            assert closed
    assert frames_loop.wait_until(lambda: len(handler) == 0)
    frames_loop.call(server.close)


# -- any bytes in: the frames the codec finds come back, a refused stream closes -------------


def expected(data: bytes) -> tuple[bytes, bool]:
    """What the server must send back for ``data``, and whether it must refuse it."""
    buffer = Buffer(data)
    frames: list[bytes] = []
    try:
        CODEC.decode(buffer, frames)
    except FrameError:
        return CODEC.encode_many(frames), True
    return CODEC.encode_many(frames), False


frame_streams = st.lists(
    st.one_of(
        st.binary(max_size=64).map(CODEC.encode),  # a good frame
        st.integers(0, 2**32 - 1).map(lambda n: struct.pack("!I", n)),  # any length field
        st.binary(max_size=16),  # noise
    ),
    max_size=8,
).map(b"".join)


@pytest.fixture(scope="module")
def echo_server(frames_loop: LoopThread) -> Iterator[tuple[TcpServer, FrameEcho]]:
    handler = FrameEcho(CODEC)
    server = start(frames_loop, handler)
    yield server, handler
    frames_loop.call(server.close)


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=frame_streams)
def test_any_bytes_get_the_codecs_frames_back_or_a_close(
    echo_server: tuple[TcpServer, FrameEcho], data: bytes
) -> None:
    server, _ = echo_server
    want, refused = expected(data)
    with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)  # no more: a partial frame at the end stays partial
        got, closed = read_until_closed(sock)
    assert closed  # refused, or closed after our FIN: never left hanging
    if refused:
        assert want.startswith(got)  # a reset may cut what was in flight, never alter it
    else:
        assert got == want
