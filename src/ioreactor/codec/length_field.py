"""Length-prefixed frames (Netty's LengthFieldBasedFrameDecoder and LengthFieldPrepender).

A frame on the wire::

    +---------------------+--------------+-------------------------------+
    | length_field_offset | length field |  length + length_adjustment   |
    |  bytes (any header) | 1/2/4/8 B BE |  bytes (the rest of the frame)|
    +---------------------+--------------+-------------------------------+
    |<--------- header_end --------->|
    |<---------------------------- frame length ------------------------>|

The frame length is ``header_end + length + length_adjustment``. A length field that
counts the whole frame, header included, uses ``length_adjustment = -header_end``; one
that also counts bytes after it that are not payload uses a positive adjustment. The
decoder hands on each frame without its first ``initial_bytes_to_strip`` bytes (strip
``header_end`` to get the bare payload).

Limits are checked as soon as a header is readable: a frame longer than
``max_frame_length`` (counted on the wire, header included) or a length that is
negative after the adjustment raises before a single byte of its body is waited for.
The field is unsigned, so a forged 8-byte length of 2**64-1 is simply too long.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable

from ioreactor.codec.base import Codec, CorruptFrameError, FrameError, FrameTooLongError
from ioreactor.net.buffer import Buffer

#: Default limit on one frame, header included (a peer cannot make us buffer more).
MAX_FRAME_LENGTH = 1024 * 1024

_FORMATS = {1: "!B", 2: "!H", 4: "!I", 8: "!Q"}


class LengthFieldCodec(Codec):
    """Decodes and encodes length-prefixed frames; see the module docstring."""

    __slots__ = (
        "_extra",
        "_header_end",
        "_min_frame",
        "_pack",
        "_unpack",
        "initial_bytes_to_strip",
        "length_adjustment",
        "length_field_length",
        "length_field_offset",
        "max_frame_length",
    )

    def __init__(
        self,
        length_field_length: int = 4,
        *,
        length_field_offset: int = 0,
        length_adjustment: int = 0,
        initial_bytes_to_strip: int = 0,
        max_frame_length: int = MAX_FRAME_LENGTH,
    ) -> None:
        fmt = _FORMATS.get(length_field_length)
        if fmt is None:
            raise ValueError(
                f"length_field_length must be 1, 2, 4 or 8 bytes, got {length_field_length}"
            )
        if length_field_offset < 0:
            raise ValueError(f"length_field_offset must be >= 0, got {length_field_offset}")
        if initial_bytes_to_strip < 0:
            raise ValueError(f"initial_bytes_to_strip must be >= 0, got {initial_bytes_to_strip}")
        header_end = length_field_offset + length_field_length
        if max_frame_length < header_end:
            raise ValueError(
                f"max_frame_length {max_frame_length} cannot hold the {header_end}-byte header"
            )
        self.length_field_length = length_field_length
        self.length_field_offset = length_field_offset
        self.length_adjustment = length_adjustment
        self.initial_bytes_to_strip = initial_bytes_to_strip
        self.max_frame_length = max_frame_length
        codec = struct.Struct(fmt)
        self._unpack = codec.unpack_from
        self._pack = codec.pack
        self._header_end = header_end
        #: frame length = length field + _extra
        self._extra = header_end + length_adjustment
        #: shortest valid frame: the header, and at least the bytes to strip
        self._min_frame = max(header_end, initial_bytes_to_strip)

    def __repr__(self) -> str:
        return (
            f"LengthFieldCodec({self.length_field_length}, "
            f"length_field_offset={self.length_field_offset}, "
            f"length_adjustment={self.length_adjustment}, "
            f"initial_bytes_to_strip={self.initial_bytes_to_strip}, "
            f"max_frame_length={self.max_frame_length})"
        )

    # -- decoding ------------------------------------------------------------------------

    def decode(self, buffer: Buffer, frames: list[bytes]) -> None:
        n = len(buffer)
        header_end = self._header_end
        if n < header_end:
            return
        unpack = self._unpack
        offset = self.length_field_offset
        extra = self._extra
        max_frame = self.max_frame_length
        min_frame = self._min_frame
        with buffer.peek() as view:
            frame_len = unpack(view, offset)[0] + extra
            if frame_len > max_frame or frame_len < min_frame:
                raise self._bad_frame(frame_len)
            if frame_len > n:
                return  # not even one whole frame yet: copy nothing
            # One copy of the readable bytes; frames are slices of it. A partial frame at
            # the end is copied here once, then waits at the head of the buffer, where
            # the check above returns before copying it again.
            data = view.tobytes()
        strip = self.initial_bytes_to_strip
        append = frames.append
        pos = 0
        while True:
            end = pos + frame_len
            append(data[pos + strip : end])
            pos = end
            if n - pos < header_end:
                break
            frame_len = unpack(data, pos + offset)[0] + extra
            if frame_len > max_frame or frame_len < min_frame:
                buffer.retrieve(pos)
                raise self._bad_frame(frame_len)
            if n - pos < frame_len:
                break
        buffer.retrieve(pos)

    def _bad_frame(self, frame_len: int) -> FrameError:
        field = frame_len - self._extra
        if frame_len > self.max_frame_length:
            return FrameTooLongError(
                f"frame of {frame_len} bytes (length field {field}) exceeds "
                f"max_frame_length {self.max_frame_length}",
                frame_len,
            )
        body = field + self.length_adjustment
        if body < 0:
            return CorruptFrameError(
                f"length field {field} with length_adjustment {self.length_adjustment} "
                f"gives a negative length {body}",
                body,
            )
        return CorruptFrameError(
            f"frame of {frame_len} bytes is shorter than "
            f"initial_bytes_to_strip {self.initial_bytes_to_strip}",
            frame_len,
        )

    # -- encoding ------------------------------------------------------------------------

    def _field_for(self, body_length: int, prefix_length: int) -> int:
        """The length field value for a frame whose bytes after the field number ``body_length``."""
        if prefix_length != self.length_field_offset:
            raise ValueError(
                f"prefix must be length_field_offset={self.length_field_offset} bytes, "
                f"got {prefix_length}"
            )
        field = body_length - self.length_adjustment
        frame_len = self._header_end + body_length
        if field < 0 or field >= 1 << (8 * self.length_field_length):
            raise ValueError(
                f"a {body_length}-byte body gives length field {field}, which does not fit "
                f"{self.length_field_length} unsigned bytes"
            )
        if frame_len > self.max_frame_length:
            raise ValueError(
                f"frame of {frame_len} bytes exceeds max_frame_length {self.max_frame_length}"
            )
        return field

    def encode(self, payload: bytes | bytearray | memoryview, prefix: bytes = b"") -> bytes:
        """``prefix`` (the ``length_field_offset`` bytes before the field), field, payload.

        ``payload`` is everything after the length field.
        """
        field = self._field_for(len(payload), len(prefix))
        return b"".join((prefix, self._pack(field), payload))

    def encode_many(self, payloads: Iterable[bytes | bytearray | memoryview]) -> bytes:
        """Several frames (no prefix) as one byte string, validated as :meth:`encode` does."""
        if self.length_field_offset:
            return super().encode_many(payloads)
        pack = self._pack
        adjustment = self.length_adjustment
        # Bodies in [lowest, highest] bytes fit both the field and max_frame_length.
        lowest = max(0, adjustment)
        highest = min(
            self.max_frame_length - self._header_end,
            (1 << (8 * self.length_field_length)) - 1 + adjustment,
        )
        parts: list[bytes | bytearray | memoryview] = []
        append = parts.append
        for payload in payloads:
            size = len(payload)
            if not lowest <= size <= highest:
                self._field_for(size, 0)  # raises with the reason
            append(pack(size - adjustment))
            append(payload)
        return b"".join(parts)

    def prepend_header(self, buffer: Buffer, prefix: bytes = b"") -> None:
        """Turn the readable bytes of ``buffer`` into a frame by prepending the header.

        muduo's idiom: append the body first, then put the length in front of it in the
        buffer's prependable space, without moving the body.
        """
        field = self._field_for(len(buffer), len(prefix))
        buffer.prepend(self._pack(field))
        if prefix:
            buffer.prepend(prefix)
