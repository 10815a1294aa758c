"""What every framing codec is: a decoder of whole frames and the matching encoder.

TCP delivers a byte stream; the application finds the message boundaries. A codec turns
the bytes in a connection's input :class:`~ioreactor.net.buffer.Buffer` into frames and
frames back into bytes. It keeps no per-connection state: everything it needs is in the
buffer, so one codec object serves every connection of a server.

Decoding contract (:meth:`Codec.decode`): append every complete frame the buffer holds
to ``frames`` and consume their bytes; leave a partial frame in the buffer for the next
read. A frame that breaks a limit raises :class:`FrameError` as soon as its header (or,
for delimited frames, enough bytes) shows it -- before any memory is reserved for its
body -- with the frames decoded before it already in ``frames`` and consumed.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable

from ioreactor.net.buffer import Buffer


class FrameError(ValueError):
    """The peer broke the framing rules; the connection cannot be trusted any more.

    ``length`` is the offending frame length the peer announced or sent.
    """

    def __init__(self, message: str, length: int) -> None:
        super().__init__(message)
        self.length = length


class FrameTooLongError(FrameError):
    """A frame (or a line still without its delimiter) exceeds the codec's maximum."""


class CorruptFrameError(FrameError):
    """A header that cannot describe a frame (e.g. negative after the length adjustment)."""


class Codec(ABC):
    """Frames to and from bytes; see the module docstring for the decoding contract."""

    __slots__ = ()

    @abstractmethod
    def decode(self, buffer: Buffer, frames: list[bytes]) -> None:
        """Move every complete frame from ``buffer`` to ``frames``; raise on a bad one."""

    @abstractmethod
    def encode(self, payload: bytes | bytearray | memoryview) -> bytes:
        """The bytes that put ``payload`` on the wire as one frame."""

    def encode_many(self, payloads: Iterable[bytes | bytearray | memoryview]) -> bytes:
        """Several frames as one byte string (one ``send`` for a batch of replies)."""
        encode = self.encode
        return b"".join([encode(payload) for payload in payloads])
