"""Fixed-length frames (Netty's FixedLengthFrameDecoder): every frame is N bytes."""

from __future__ import annotations

from ioreactor.codec.base import Codec
from ioreactor.net.buffer import Buffer


class FixedLengthCodec(Codec):
    """Splits the stream into ``frame_length``-byte frames."""

    __slots__ = ("frame_length",)

    def __init__(self, frame_length: int) -> None:
        if frame_length < 1:
            raise ValueError(f"frame_length must be >= 1, got {frame_length}")
        self.frame_length = frame_length

    def __repr__(self) -> str:
        return f"FixedLengthCodec({self.frame_length})"

    def decode(self, buffer: Buffer, frames: list[bytes]) -> None:
        size = self.frame_length
        whole = len(buffer) // size * size
        if not whole:
            return
        data = buffer.read(whole)
        if whole == size:
            frames.append(data)
        else:
            frames.extend([data[i : i + size] for i in range(0, whole, size)])

    def encode(self, payload: bytes | bytearray | memoryview) -> bytes:
        """``payload`` itself, which must be exactly ``frame_length`` bytes."""
        if len(payload) != self.frame_length:
            raise ValueError(
                f"a fixed-length frame must be {self.frame_length} bytes, got {len(payload)}"
            )
        return bytes(payload)
