"""LineCodec and DelimiterCodec: delimiters, strip/keep, the length limit, split reads."""

from __future__ import annotations

import pytest
from codec_support import assert_every_split, byte_by_byte, decode_reads, split_at
from hypothesis import given, settings
from hypothesis import strategies as st

from ioreactor.codec import DelimiterCodec, FrameTooLongError, LineCodec
from ioreactor.net.buffer import Buffer


def test_lines_end_in_lf_or_crlf() -> None:
    stream = b"one\ntwo\r\n\nthree\r\r\n"
    assert_every_split(LineCodec(), stream, [b"one", b"two", b"", b"three\r"])


def test_lines_can_keep_their_delimiter() -> None:
    stream = b"one\ntwo\r\n"
    assert_every_split(LineCodec(strip_delimiter=False), stream, [b"one\n", b"two\r\n"])


def test_many_lines_in_one_read_are_decoded_in_one_pass() -> None:
    lines = [b"line %d" % i for i in range(16)]
    buffer = Buffer(b"\n".join(lines) + b"\npartial")
    frames: list[bytes] = []
    LineCodec().decode(buffer, frames)
    assert frames == lines
    assert buffer.read_all() == b"partial"


def test_line_limit_counts_the_content_not_the_delimiter() -> None:
    codec = LineCodec(max_length=4)
    assert_every_split(codec, b"abcd\r\nabcd\n", [b"abcd", b"abcd"])
    with pytest.raises(FrameTooLongError) as info:
        decode_reads(codec, [b"abcde\n"])
    assert info.value.length == 5


def test_too_long_line_is_refused_before_its_delimiter_arrives() -> None:
    codec = LineCodec(max_length=8)
    buffer = Buffer()
    frames: list[bytes] = []
    for byte in byte_by_byte(b"x" * 9):  # 8 bytes + a possible "\r" are still fine
        buffer.append(byte)
        codec.decode(buffer, frames)
    buffer.append(b"x")
    with pytest.raises(FrameTooLongError, match="max_length 8"):
        codec.decode(buffer, frames)


def test_too_long_tail_after_good_lines_is_refused() -> None:
    codec = LineCodec(max_length=4)
    buffer = Buffer(b"ok\n" + b"y" * 6)
    frames: list[bytes] = []
    with pytest.raises(FrameTooLongError):
        codec.decode(buffer, frames)
    assert frames == [b"ok"]


def test_too_long_line_between_good_ones() -> None:
    codec = DelimiterCodec(b";", max_length=3)
    buffer = Buffer(b"a;bbbb;c;")
    frames: list[bytes] = []
    with pytest.raises(FrameTooLongError):
        codec.decode(buffer, frames)
    assert frames == [b"a"]
    assert buffer.read_all() == b"bbbb;c;"


def test_a_single_lf_delimiter_leaves_a_cr_in_the_frame() -> None:
    assert_every_split(DelimiterCodec(b"\n"), b"a\r\nb\n", [b"a\r", b"b"])


def test_several_delimiters_the_shortest_frame_wins() -> None:
    codec = DelimiterCodec([b"\n", b"\r\n", b"#"])  # list order is not priority
    assert_every_split(codec, b"a\r\nb#c\n", [b"a", b"b", b"c"])
    tie = DelimiterCodec([b"ab", b"a"])  # same start: the earlier in the list wins
    assert decode_reads(tie, [b"xab"])[0] == [b"x"]
    keep = DelimiterCodec([b"END", b"\0"], strip_delimiter=False)
    assert_every_split(keep, b"xEND\0yEND", [b"xEND", b"\0", b"yEND"])


def test_multi_delimiter_limit_and_pending_bound() -> None:
    codec = DelimiterCodec([b"END", b"\0"], max_length=4)
    assert_every_split(codec, b"abcdEND", [b"abcd"])  # 4 bytes + "EN" pending is fine
    with pytest.raises(FrameTooLongError):
        decode_reads(codec, [b"abcdefg"])  # 7 > 4 + 3 - 1
    with pytest.raises(FrameTooLongError):
        decode_reads(codec, [b"a\0abcde\0"])


@settings(max_examples=60, deadline=None)
@given(
    lines=st.lists(st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"").rstrip(b"\r"))),
    cuts=st.lists(st.integers(min_value=0, max_value=2000), max_size=15),
    crlf=st.booleans(),
)
def test_any_split_reassembles_lines(lines: list[bytes], cuts: list[int], crlf: bool) -> None:
    codec = LineCodec(newline=b"\r\n" if crlf else b"\n")
    stream = codec.encode_many(lines)
    frames, rest = decode_reads(codec, split_at(stream, cuts))
    assert frames == lines
    assert len(rest) == 0


def _outcome(codec: DelimiterCodec, reads: list[bytes]) -> tuple[list[bytes], int | None, bytes]:
    """The frames, the too-long length (None: no error) and what stays buffered."""
    buffer = Buffer()
    frames: list[bytes] = []
    try:
        for chunk in reads:
            buffer.append(chunk)
            codec.decode(buffer, frames)
    except FrameTooLongError as exc:
        return frames, exc.length, buffer.read_all()
    return frames, None, buffer.read_all()


@settings(max_examples=200, deadline=None)
@given(
    stream=st.lists(st.sampled_from([b"a", b"\r", b"\n"]), max_size=40).map(b"".join),
    cuts=st.lists(st.integers(min_value=0, max_value=60), max_size=6),
    max_length=st.integers(min_value=1, max_value=6),
    strip=st.booleans(),
)
def test_lines_decode_as_the_general_search_for_both_delimiters(
    stream: bytes, cuts: list[int], max_length: int, strip: bool
) -> None:
    """Lines take one find of LF per line; the frames, the errors and the rest are the
    general search's (a third delimiter that never comes keeps that search in use)."""
    general = DelimiterCodec(
        [b"\r\n", b"\n", b"\0\0"], max_length=max_length, strip_delimiter=strip
    )
    lines = LineCodec(max_length=max_length, strip_delimiter=strip)
    pair = DelimiterCodec([b"\n", b"\r\n"], max_length=max_length, strip_delimiter=strip)
    reads = split_at(stream, cuts)
    expected = _outcome(general, reads)
    assert _outcome(lines, reads) == expected
    assert _outcome(pair, reads) == expected


def test_encode_appends_the_terminator_and_refuses_what_would_not_decode_back() -> None:
    assert LineCodec().encode(b"hi") == b"hi\n"
    assert LineCodec(newline=b"\r\n").encode(b"hi") == b"hi\r\n"
    assert DelimiterCodec([b";", b","], terminator=b",").encode(b"x") == b"x,"
    with pytest.raises(ValueError, match="delimiter"):
        LineCodec().encode(b"a\nb")
    with pytest.raises(ValueError, match="delimiter"):
        LineCodec().encode(b"ends in cr\r")  # "\r" + "\n" would eat the "\r"
    with pytest.raises(ValueError, match="max_length"):
        LineCodec(max_length=2).encode(b"abc")


@pytest.mark.parametrize(
    ("delimiters", "kwargs"),
    [
        ([], {}),
        ([b""], {}),
        ([b";"], {"max_length": 0}),
        ([b";"], {"terminator": b","}),
    ],
)
def test_invalid_parameters_are_rejected(
    delimiters: list[bytes], kwargs: dict[str, object]
) -> None:
    with pytest.raises(ValueError):
        DelimiterCodec(delimiters, **kwargs)  # type: ignore[arg-type]
