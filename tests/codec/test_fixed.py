"""FixedLengthCodec: N-byte frames, split reads, exact-size encoding."""

from __future__ import annotations

import pytest
from codec_support import assert_every_split

from ioreactor.codec import FixedLengthCodec
from ioreactor.net.buffer import Buffer


def test_frames_are_cut_every_n_bytes_however_they_arrive() -> None:
    assert_every_split(FixedLengthCodec(3), b"abcdefghi", [b"abc", b"def", b"ghi"])
    assert_every_split(FixedLengthCodec(1), b"xy", [b"x", b"y"])


def test_all_whole_frames_in_one_pass_and_the_rest_waits() -> None:
    buffer = Buffer(b"aabbccd")
    frames: list[bytes] = []
    FixedLengthCodec(2).decode(buffer, frames)
    assert frames == [b"aa", b"bb", b"cc"]
    assert buffer.read_all() == b"d"


def test_encode_requires_the_exact_length() -> None:
    codec = FixedLengthCodec(4)
    assert codec.encode(bytearray(b"abcd")) == b"abcd"
    assert codec.encode_many([b"abcd", b"efgh"]) == b"abcdefgh"
    with pytest.raises(ValueError, match="4 bytes"):
        codec.encode(b"abc")
    with pytest.raises(ValueError):
        FixedLengthCodec(0)
