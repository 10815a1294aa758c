"""FrameHandler on real sockets: frames in, frames out, and a bad peer closed with a reason."""

from __future__ import annotations

import logging
import socket

import pytest

from ioreactor.codec import FrameHandler, LengthFieldCodec, LineCodec
from ioreactor.net.connection import TcpConnection
from ioreactor.net.server import TcpServer
from ioreactor.testing import LoopThread, read_until_closed, recv_exactly

CODEC = LengthFieldCodec(2, initial_bytes_to_strip=2, max_frame_length=1000)


class FrameEcho(FrameHandler):
    """Sends every batch back as one write and records the batch sizes."""

    def __init__(self) -> None:
        super().__init__(CODEC)
        self.batches: list[int] = []
        self.closed: list[TcpConnection] = []

    def on_frames(self, conn: TcpConnection, frames: list[bytes]) -> None:
        self.batches.append(len(frames))
        conn.send(self.codec.encode_many(frames))

    def on_close(self, conn: TcpConnection) -> None:
        self.closed.append(conn)


def start(loop_thread: LoopThread, handler: FrameHandler) -> TcpServer:
    return loop_thread.call(TcpServer(loop_thread.loop, ("127.0.0.1", 0), handler).start)


def test_frames_of_one_read_arrive_as_one_batch(loop_thread: LoopThread) -> None:
    handler = FrameEcho()
    server = start(loop_thread, handler)
    wire = CODEC.encode_many([b"%02d" % i * 32 for i in range(16)])
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(wire)
        assert recv_exactly(sock, len(wire)) == wire
    assert sum(handler.batches) == 16
    assert max(handler.batches) > 1  # 16 frames in one segment do not arrive one by one


def test_oversized_frame_closes_the_connection_with_the_reason_logged(
    loop_thread: LoopThread, caplog: pytest.LogCaptureFixture
) -> None:
    handler = FrameEcho()
    server = start(loop_thread, handler)
    caplog.set_level(logging.WARNING, logger="ioreactor.codec")
    good = CODEC.encode(b"fine")
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(good + b"\xff\xff" + b"x" * 100)  # 65535 + 2 > 1000
        assert read_until_closed(sock, 10) == (good, True)  # the echo, then EOF
        assert loop_thread.wait_until(lambda: len(handler.closed) == 1, timeout=10)
        local = sock.getsockname()
    message = next(r.getMessage() for r in caplog.records if r.name == "ioreactor.codec")
    assert str(local[1]) in message  # names the peer
    assert "65537" in message and "max_frame_length 1000" in message
    assert handler.closed[0].error is not None


def test_endless_line_closes_the_connection(loop_thread: LoopThread) -> None:
    closed: list[TcpConnection] = []

    class Lines(FrameHandler):
        def on_close(self, conn: TcpConnection) -> None:
            closed.append(conn)

    server = start(loop_thread, Lines(LineCodec(max_length=64)))
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        try:
            for _ in range(100):
                sock.sendall(b"y" * 64)  # never a newline
        except OSError:
            pass  # the server may already have reset the connection
        assert loop_thread.wait_until(lambda: len(closed) == 1, timeout=10)
        # closed (with our unread bytes in its receive queue the kernel sends RST)
        assert read_until_closed(sock, 10) == (b"", True)
