"""LengthFieldCodec: every parameter, the limits, and reads split at every byte."""

from __future__ import annotations

import struct

import pytest
from codec_support import assert_every_split, byte_by_byte, decode_reads, split_at
from hypothesis import given, settings
from hypothesis import strategies as st

from ioreactor.codec import CorruptFrameError, FrameTooLongError, LengthFieldCodec
from ioreactor.net.buffer import Buffer

HELLO = b"HELLO, WORLD"  # 12 bytes, Netty's documentation example


# Netty's LengthFieldBasedFrameDecoder documentation cases (3-byte fields become 2-byte):
# (codec parameters, bytes on the wire, the frame handed on)
NETTY_CASES = [
    pytest.param(dict(length_field_length=2), b"\x00\x0c" + HELLO, b"\x00\x0c" + HELLO,
                 id="length-only"),
    pytest.param(dict(length_field_length=2, initial_bytes_to_strip=2),
                 b"\x00\x0c" + HELLO, HELLO, id="strip-header"),
    pytest.param(dict(length_field_length=2, length_adjustment=-2),
                 b"\x00\x0e" + HELLO, b"\x00\x0e" + HELLO, id="length-counts-header"),
    pytest.param(dict(length_field_length=2, length_field_offset=2),
                 b"\xca\xfe\x00\x0c" + HELLO, b"\xca\xfe\x00\x0c" + HELLO,
                 id="header-before-length"),
    pytest.param(dict(length_field_length=2, length_adjustment=2),
                 b"\x00\x0c\xca\xfe" + HELLO, b"\x00\x0c\xca\xfe" + HELLO,
                 id="header-after-length"),
    pytest.param(dict(length_field_length=2, length_field_offset=1, length_adjustment=1,
                      initial_bytes_to_strip=3),
                 b"\xca\x00\x0c\xfe" + HELLO, b"\xfe" + HELLO, id="two-headers-strip"),
    pytest.param(dict(length_field_length=2, length_field_offset=1, length_adjustment=-3,
                      initial_bytes_to_strip=3),
                 b"\xca\x00\x10\xfe" + HELLO, b"\xfe" + HELLO,
                 id="two-headers-length-counts-all"),
]  # fmt: skip


@pytest.mark.parametrize(("params", "wire", "frame"), NETTY_CASES)
def test_netty_documented_layouts(params: dict[str, int], wire: bytes, frame: bytes) -> None:
    codec = LengthFieldCodec(**params)
    assert_every_split(codec, wire, [frame])
    assert_every_split(codec, wire * 3, [frame] * 3)


@pytest.mark.parametrize(("params", "wire", "frame"), NETTY_CASES)
def test_encoder_writes_what_the_decoder_reads(
    params: dict[str, int], wire: bytes, frame: bytes
) -> None:
    codec = LengthFieldCodec(**params)
    offset = codec.length_field_offset
    after_field = wire[offset + codec.length_field_length :]
    assert codec.encode(after_field, prefix=wire[:offset]) == wire


@pytest.mark.parametrize("width", [1, 2, 4, 8])
def test_every_field_width_in_network_order(width: int) -> None:
    codec = LengthFieldCodec(width, initial_bytes_to_strip=width)
    body = b"abc"
    wire = codec.encode(body)
    assert wire == (3).to_bytes(width, "big") + body
    assert_every_split(codec, wire + codec.encode(b"") + wire, [body, b"", body])


def test_many_frames_in_one_read_are_decoded_in_one_pass() -> None:
    codec = LengthFieldCodec(4, initial_bytes_to_strip=4)
    payloads = [bytes([i]) * 64 for i in range(16)]
    buffer = Buffer(codec.encode_many(payloads) + b"\x00\x00")  # and a partial header
    frames: list[bytes] = []
    codec.decode(buffer, frames)
    assert frames == payloads
    assert buffer.read_all() == b"\x00\x00"


def test_partial_frame_stays_in_the_buffer() -> None:
    codec = LengthFieldCodec(2, initial_bytes_to_strip=2)
    frames, rest = decode_reads(codec, [b"\x00\x05ab"])
    assert frames == []
    assert bytes(rest.peek()) == b"\x00\x05ab"
    frames, rest = decode_reads(codec, [b"\x00\x05ab", b"cde\x00"])
    assert frames == [b"abcde"]
    assert bytes(rest.peek()) == b"\x00"


@settings(max_examples=60, deadline=None)
@given(
    payloads=st.lists(st.binary(max_size=300), max_size=12),
    width=st.sampled_from([1, 2, 4, 8]),
    cuts=st.lists(st.integers(min_value=0, max_value=4000), max_size=20),
)
def test_any_split_reassembles(payloads: list[bytes], width: int, cuts: list[int]) -> None:
    codec = LengthFieldCodec(width, initial_bytes_to_strip=width, max_frame_length=1024)
    payloads = [p[: (1 << (8 * width)) - 1] for p in payloads]
    stream = codec.encode_many(payloads)
    frames, rest = decode_reads(codec, split_at(stream, cuts))
    assert frames == payloads
    assert len(rest) == 0


# -- limits -----------------------------------------------------------------------------


def test_oversized_frame_is_refused_from_its_header_alone() -> None:
    codec = LengthFieldCodec(4, max_frame_length=1000)
    buffer = Buffer(struct.pack("!I", 997))  # 4 + 997 = 1001 bytes on the wire
    with pytest.raises(FrameTooLongError) as info:
        codec.decode(buffer, [])
    assert info.value.length == 1001
    assert "1001" in str(info.value) and "1000" in str(info.value)
    assert buffer.capacity < 100  # nothing was reserved for the body


def test_frame_of_exactly_max_length_is_accepted() -> None:
    codec = LengthFieldCodec(4, max_frame_length=1000)
    wire = struct.pack("!I", 996) + bytes(996)
    assert decode_reads(codec, [wire])[0] == [wire]


def test_forged_eight_byte_length_is_too_long_not_an_allocation() -> None:
    codec = LengthFieldCodec(8, initial_bytes_to_strip=8)
    buffer = Buffer(b"\xff" * 8 + b"x")
    with pytest.raises(FrameTooLongError) as info:
        codec.decode(buffer, [])
    assert info.value.length == 2**64 - 1 + 8
    assert str(2**64 - 1) in str(info.value)
    assert buffer.capacity < 100


def test_negative_length_after_adjustment_is_corrupt() -> None:
    codec = LengthFieldCodec(2, length_adjustment=-2)  # length counts the header
    with pytest.raises(CorruptFrameError) as info:
        decode_reads(codec, [b"\x00\x01" + b"x" * 10])
    assert info.value.length == -1
    assert "negative" in str(info.value)


def test_frame_shorter_than_the_bytes_to_strip_is_corrupt() -> None:
    codec = LengthFieldCodec(1, initial_bytes_to_strip=4)
    with pytest.raises(CorruptFrameError, match="initial_bytes_to_strip"):
        decode_reads(codec, [b"\x02ab"])


def test_frames_before_a_bad_one_are_delivered_and_consumed() -> None:
    codec = LengthFieldCodec(1, initial_bytes_to_strip=1, max_frame_length=10)
    buffer = Buffer(b"\x02ok\x01k\x20" + b"z" * 5)
    frames: list[bytes] = []
    with pytest.raises(FrameTooLongError):
        codec.decode(buffer, frames)
    assert frames == [b"ok", b"k"]
    assert bytes(buffer.peek(1)) == b"\x20"


def test_bad_header_split_at_every_byte_is_caught_once_readable() -> None:
    codec = LengthFieldCodec(4, length_field_offset=2, max_frame_length=100)
    wire = b"hd" + struct.pack("!I", 1000)
    frames: list[bytes] = []
    buffer = Buffer()
    for i, byte in enumerate(byte_by_byte(wire)):
        buffer.append(byte)
        if i < len(wire) - 1:
            codec.decode(buffer, frames)  # header incomplete: nothing yet
    with pytest.raises(FrameTooLongError):
        codec.decode(buffer, frames)


# -- encoding ---------------------------------------------------------------------------


def test_encode_refuses_what_the_field_or_the_limit_cannot_hold() -> None:
    with pytest.raises(ValueError, match="does not fit"):
        LengthFieldCodec(1).encode(bytes(256))
    with pytest.raises(ValueError, match="max_frame_length"):
        LengthFieldCodec(4, max_frame_length=10).encode(bytes(7))
    with pytest.raises(ValueError, match="does not fit"):
        LengthFieldCodec(2, length_adjustment=5).encode(b"abc")  # field would be -2
    with pytest.raises(ValueError, match="prefix"):
        LengthFieldCodec(2, length_field_offset=1).encode(b"abc")
    with pytest.raises(ValueError, match="does not fit"):
        LengthFieldCodec(1).encode_many([b"a", bytes(300)])


def test_encode_many_matches_encode() -> None:
    codec = LengthFieldCodec(2, length_adjustment=-2)
    payloads = [b"", b"a", b"bc" * 50]
    assert codec.encode_many(payloads) == b"".join(codec.encode(p) for p in payloads)
    offset = LengthFieldCodec(2, length_field_offset=0)
    assert offset.encode_many(iter(payloads)) == b"".join(offset.encode(p) for p in payloads)


def test_prepend_header_frames_a_buffer_in_place() -> None:
    codec = LengthFieldCodec(4, initial_bytes_to_strip=4)
    buffer = Buffer()
    buffer.append(b"body")
    codec.prepend_header(buffer)
    assert bytes(buffer.peek()) == b"\x00\x00\x00\x04body"
    with_prefix = LengthFieldCodec(2, length_field_offset=2)
    buffer = Buffer(b"xyz")
    with_prefix.prepend_header(buffer, prefix=b"PP")
    assert bytes(buffer.peek()) == b"PP\x00\x03xyz"


@pytest.mark.parametrize(
    "params",
    [
        dict(length_field_length=3),
        dict(length_field_offset=-1),
        dict(initial_bytes_to_strip=-1),
        dict(length_field_length=4, length_field_offset=4, max_frame_length=7),
    ],
)
def test_invalid_parameters_are_rejected(params: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        LengthFieldCodec(**params)
