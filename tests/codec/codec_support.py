"""Feeding bytes to a codec the way reads would: helpers for the codec tests."""

from __future__ import annotations

import itertools
from collections.abc import Iterable

from ioreactor.codec.base import Codec
from ioreactor.net.buffer import Buffer


def decode_reads(codec: Codec, reads: Iterable[bytes]) -> tuple[list[bytes], Buffer]:
    """Append each read to one Buffer and decode after each, as a connection does."""
    buffer = Buffer()
    frames: list[bytes] = []
    for chunk in reads:
        buffer.append(chunk)
        codec.decode(buffer, frames)
    return frames, buffer


def byte_by_byte(data: bytes) -> list[bytes]:
    """Every byte its own read: a split at every byte boundary at once."""
    return [data[i : i + 1] for i in range(len(data))]


def split_at(stream: bytes, cuts: Iterable[int]) -> list[bytes]:
    """``stream`` cut at each of ``cuts`` (taken modulo its length + 1) into reads."""
    points = sorted({c % (len(stream) + 1) for c in cuts} | {0, len(stream)})
    return [stream[a:b] for a, b in itertools.pairwise(points)]


def assert_every_split(codec: Codec, stream: bytes, expected: list[bytes]) -> None:
    """The same frames however the stream is cut: one read, one byte a read, and every
    cut into two reads."""
    assert decode_reads(codec, [stream])[0] == expected
    frames, rest = decode_reads(codec, byte_by_byte(stream))
    assert frames == expected
    assert len(rest) == 0
    for cut in range(1, len(stream)):
        frames, rest = decode_reads(codec, [stream[:cut], stream[cut:]])
        assert frames == expected, f"cut at byte {cut}"
        assert len(rest) == 0
