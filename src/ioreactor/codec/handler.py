"""FrameHandler: the adapter between a connection's input Buffer and frame-level code.

::

    input Buffer -> codec.decode (every complete frame, one pass) -> on_frames(conn, frames)
                                                                  -> on_frame(conn, frame)

Override :meth:`FrameHandler.on_frames` to handle a whole batch at once (one
``conn.send`` for all the replies of a read), or :meth:`FrameHandler.on_frame` for one
frame at a time. A framing error ends the connection through
:meth:`FrameHandler.on_frame_error`: by default it logs the peer and the reason, drops
the rest of the input and closes (queued replies to the valid frames before it still
go out).
"""

from __future__ import annotations

import logging

from ioreactor.codec.base import Codec, FrameError
from ioreactor.net.buffer import Buffer
from ioreactor.net.connection import TcpConnection
from ioreactor.net.handlers import Handler

log = logging.getLogger("ioreactor.codec")


class FrameHandler(Handler):
    """A :class:`Handler` that receives decoded frames instead of raw bytes."""

    def __init__(self, codec: Codec) -> None:
        self.codec = codec
        self._decode = codec.decode

    def on_message(self, conn: TcpConnection, buffer: Buffer) -> None:
        frames: list[bytes] = []
        try:
            self._decode(buffer, frames)
        except FrameError as exc:
            if frames:
                self.on_frames(conn, frames)
            self.on_frame_error(conn, exc)
            return
        if frames:
            self.on_frames(conn, frames)

    def on_frames(self, conn: TcpConnection, frames: list[bytes]) -> None:
        """All frames decoded from one read, in order. The default calls :meth:`on_frame`."""
        on_frame = self.on_frame
        for frame in frames:
            on_frame(conn, frame)

    def on_frame(self, conn: TcpConnection, frame: bytes) -> None:
        """One decoded frame."""

    def on_frame_error(self, conn: TcpConnection, exc: FrameError) -> None:
        """The peer broke the framing rules: log who and why, drop its input, close."""
        log.warning("closing connection from %s: %s", conn.peer, exc)
        conn.error = exc
        conn.input.retrieve_all()
        conn.close()
