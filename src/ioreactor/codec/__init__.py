"""Message framing: codecs between a connection's input Buffer and frame-level handlers."""

from ioreactor.codec.base import Codec, CorruptFrameError, FrameError, FrameTooLongError
from ioreactor.codec.fixed import FixedLengthCodec
from ioreactor.codec.handler import FrameHandler
from ioreactor.codec.length_field import MAX_FRAME_LENGTH, LengthFieldCodec
from ioreactor.codec.line import MAX_LINE_LENGTH, DelimiterCodec, LineCodec

__all__ = [
    "MAX_FRAME_LENGTH",
    "MAX_LINE_LENGTH",
    "Codec",
    "CorruptFrameError",
    "DelimiterCodec",
    "FixedLengthCodec",
    "FrameError",
    "FrameHandler",
    "FrameTooLongError",
    "LengthFieldCodec",
    "LineCodec",
]
