"""Buffer: every method, the region invariants of its diagram, and a bytes model.

The property tests run random sequences of appends / retrieves / reads / prepends /
shrinks / releases and compare the readable bytes with a plain ``bytes`` model after
every step, so any split point of the input is exercised.
"""

from __future__ import annotations

import socket
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ioreactor.net.buffer import CHEAP_PREPEND, COMPACT_THRESHOLD, Buffer

pytestmark = pytest.mark.timeout(60)

WIDTHS = (1, 2, 4, 8)


def check_regions(buf: Buffer) -> None:
    """The diagram: 0 <= reader_index <= writer_index <= capacity, regions add up."""
    assert buf.prependable_bytes + buf.readable_bytes + buf.writable_bytes == buf.capacity
    assert buf.prependable_bytes >= 0
    assert buf.readable_bytes == len(buf) >= 0
    assert buf.writable_bytes >= 0


# -- basics -------------------------------------------------------------------------------


def test_empty_buffer() -> None:
    buf = Buffer()
    check_regions(buf)
    assert len(buf) == 0
    assert buf.prependable_bytes == CHEAP_PREPEND
    assert bytes(buf.peek()) == b""
    assert buf.read_all() == b""
    assert buf.find(b"x") == -1
    assert "readable=0" in repr(buf)


@pytest.mark.parametrize("initial", [b"hello", bytearray(b"hello"), memoryview(b"hello")])
def test_initial_content(initial: bytes | bytearray | memoryview) -> None:
    buf = Buffer(initial)
    check_regions(buf)
    assert len(buf) == 5
    assert bytes(buf.peek()) == b"hello"


def test_append_peek_retrieve_read() -> None:
    buf = Buffer()
    buf.append(b"hello ")
    buf.append(bytearray(b"world"))
    buf.append(memoryview(b"!!"))
    check_regions(buf)
    assert bytes(buf.peek(5)) == b"hello"
    assert bytes(buf.peek(100)) == b"hello world!!"
    assert len(buf) == 13, "peek does not consume"
    buf.retrieve(6)
    check_regions(buf)
    assert buf.prependable_bytes == CHEAP_PREPEND + 6
    assert buf.read(5) == b"world"
    assert buf.read_all() == b"!!"
    assert buf.prependable_bytes == CHEAP_PREPEND, "emptied: indices reset to the front"


def test_retrieve_edge_cases() -> None:
    buf = Buffer(b"abc")
    with pytest.raises(ValueError, match="cannot retrieve -1"):
        buf.retrieve(-1)
    buf.retrieve(0)
    assert bytes(buf.peek()) == b"abc"
    buf.retrieve(10)  # more than readable: consumes everything (muduo retrieveAll)
    assert len(buf) == 0 and buf.prependable_bytes == CHEAP_PREPEND
    buf.append(b"xyz")
    buf.retrieve_all()
    assert len(buf) == 0


def test_read_more_than_readable_raises_and_keeps_content() -> None:
    buf = Buffer(b"abc")
    with pytest.raises(ValueError, match="need 4 bytes, only 3 readable"):
        buf.read(4)
    assert buf.read(3) == b"abc"


def test_read_returns_a_copy() -> None:
    buf = Buffer(b"abcdef")
    first = buf.read(3)
    buf.append(b"XYZ" * 1000)
    assert first == b"abc"


def test_find_crlf_and_eol_across_chunk_boundaries() -> None:
    buf = Buffer()
    buf.append(b"GET / HTTP/1.1\r")
    assert buf.find_crlf() == -1
    assert buf.find_eol() == -1
    buf.append(b"\nHost: x\n")
    assert buf.find_crlf() == 14
    assert buf.find_eol() == 15
    assert buf.find_eol(16) == 23
    assert buf.find(b"Host") == 16
    buf.retrieve(16)
    assert buf.find_crlf() == -1, "offsets are relative to the reader index"
    assert buf.find_eol() == 7
    assert buf.find(b"GET") == -1, "consumed bytes are not searched"


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("signed", [False, True])
def test_integers_round_trip_in_network_order(width: int, signed: bool) -> None:
    bits = 8 * width
    if signed:
        values = [-(2 ** (bits - 1)), -1, 0, 1, 2 ** (bits - 1) - 1]
    else:
        values = [0, 1, 2**bits - 1]
    buf = Buffer()
    for v in values:
        buf.append_int(v, width, signed)
    check_regions(buf)
    assert len(buf) == width * len(values)
    raw = bytes(buf.peek(width))
    assert raw == values[0].to_bytes(width, "big", signed=signed)
    for i, v in enumerate(values):
        assert buf.peek_int(width, i * width, signed) == v
    for v in values:
        assert buf.read_int(width, signed) == v
    assert len(buf) == 0


def test_integer_errors() -> None:
    buf = Buffer(b"\x01\x02\x03")
    with pytest.raises(ValueError, match="width must be 1, 2, 4 or 8"):
        buf.peek_int(3)
    with pytest.raises(ValueError, match="width must be 1, 2, 4 or 8"):
        buf.append_int(1, 16)
    with pytest.raises(ValueError, match="need 4 bytes, only 3 readable"):
        buf.peek_int(4)
    with pytest.raises(ValueError, match="need 4 bytes"):
        buf.peek_int(2, offset=2)
    with pytest.raises(ValueError):
        buf.read_int(4)
    assert len(buf) == 3, "a failed read_int consumes nothing"
    with pytest.raises(struct.error):
        buf.append_int(256, 1)
    assert buf.peek_int(2, offset=1) == 0x0203


def test_prepend_a_length_header_without_moving_the_body() -> None:
    buf = Buffer()
    body = b"payload"
    buf.append(body)
    capacity = buf.capacity
    buf.prepend_int(len(body), 4)
    check_regions(buf)
    assert buf.capacity == capacity, "prepend uses the reserved front bytes"
    assert buf.prependable_bytes == CHEAP_PREPEND - 4
    buf.prepend(b"\xab")
    assert buf.read(1) == b"\xab"
    assert buf.read_int(4) == len(body)
    assert buf.read_all() == body


def test_prepend_beyond_the_prependable_region_is_refused() -> None:
    buf = Buffer(b"x")
    with pytest.raises(ValueError, match=f"only {CHEAP_PREPEND} prependable bytes"):
        buf.prepend(b"y" * (CHEAP_PREPEND + 1))
    assert bytes(buf.peek()) == b"x"
    buf.prepend(b"y" * CHEAP_PREPEND)
    assert buf.prependable_bytes == 0
    assert bytes(buf.peek()) == b"y" * CHEAP_PREPEND + b"x"


def test_consumed_front_space_is_reclaimed_by_sliding() -> None:
    buf = Buffer()
    buf.append(b"a" * (COMPACT_THRESHOLD + 100))
    buf.retrieve(COMPACT_THRESHOLD + 90)  # 10 readable behind a large consumed front
    buf.append(b"b" * 5)  # compacts first: the content slides back to the front
    check_regions(buf)
    assert buf.prependable_bytes == CHEAP_PREPEND
    assert buf.capacity < COMPACT_THRESHOLD
    assert buf.read_all() == b"a" * 10 + b"b" * 5


def test_small_consumed_front_is_not_compacted_on_every_append() -> None:
    buf = Buffer()
    buf.append(b"a" * 1000)
    buf.retrieve(900)
    buf.append(b"b")
    assert buf.prependable_bytes == CHEAP_PREPEND + 900
    assert buf.read_all() == b"a" * 100 + b"b"


def test_growth_keeps_content() -> None:
    buf = Buffer(b"abc")
    for i in range(100):
        buf.append(bytes([i]) * 1000)
        check_regions(buf)
    assert buf.read(3) == b"abc"
    assert buf.read_all() == b"".join(bytes([i]) * 1000 for i in range(100))


@pytest.mark.parametrize("consumed", [0, 5, 90, COMPACT_THRESHOLD + 10])
@pytest.mark.parametrize("need", [1, 50, 95, 5000])
def test_ensure_writable_guarantees_the_room(consumed: int, need: int) -> None:
    buf = Buffer()
    buf.append(b"q" * (consumed + 10))
    buf.retrieve(consumed)
    buf.ensure_writable(need)
    check_regions(buf)
    assert buf.writable_bytes >= need
    assert buf.read_all() == b"q" * 10


def test_shrink_keeps_content_and_reserve() -> None:
    buf = Buffer()
    buf.append(b"x" * 100_000)
    buf.retrieve(99_990)
    buf.shrink(reserve=16)
    check_regions(buf)
    assert buf.capacity == CHEAP_PREPEND + 10 + 16
    assert buf.writable_bytes == 16
    assert buf.read_all() == b"x" * 10


def test_release_frees_storage_only_when_empty() -> None:
    buf = Buffer()
    buf.append(b"y" * 50_000)
    buf.release()
    assert buf.capacity > 50_000, "release keeps storage that still holds content"
    buf.retrieve(50_000)
    buf.release()
    check_regions(buf)
    assert buf.capacity == CHEAP_PREPEND
    assert buf.prependable_bytes == CHEAP_PREPEND
    buf.append(b"again")
    assert buf.read_all() == b"again"
    buf.release()
    buf.release()
    assert buf.capacity == CHEAP_PREPEND


@pytest.mark.parametrize(
    "operation", ["append", "append_received", "compact", "ensure_writable", "release"]
)
def test_a_kept_peek_view_never_makes_a_resize_fail(operation: str) -> None:
    """A view kept past a change pins the bytearray (resizing it raises BufferError):
    the buffer moves to new storage instead, and the view keeps the old bytes."""
    buf = Buffer()
    buf.append(b"a" * (COMPACT_THRESHOLD + 100))
    kept = buf.peek(4)
    if operation == "append":
        buf.append(b"b" * 100_000)  # grows the storage
        expected = b"a" * (COMPACT_THRESHOLD + 100) + b"b" * 100_000
    elif operation == "append_received":
        buf.retrieve_all()
        buf.append_received(b"b" * 5)  # the empty-buffer path replaces the storage's tail
        expected = b"b" * 5
    elif operation == "compact":
        buf.retrieve(COMPACT_THRESHOLD + 90)
        buf.append(b"b" * 5)  # compacts first: shrinks the storage
        expected = b"a" * 10 + b"b" * 5
    elif operation == "ensure_writable":
        buf.ensure_writable(1_000_000)
        expected = b"a" * (COMPACT_THRESHOLD + 100)
    else:
        buf.retrieve_all()
        buf.release()
        assert buf.capacity == CHEAP_PREPEND
        expected = b""
    check_regions(buf)
    assert bytes(kept) == b"aaaa"
    assert buf.read_all() == expected
    kept.release()


def test_append_received_fills_an_empty_buffer_and_appends_to_the_rest() -> None:
    scratch = memoryview(bytearray(b"0123456789" * 10))
    buf = Buffer()
    assert buf.is_empty()
    buf.ensure_writable(4096)
    buf.append_received(scratch[:10])  # empty: the bytes become the whole content
    check_regions(buf)
    assert not buf.is_empty() and buf.capacity == CHEAP_PREPEND + 10, "no spare storage kept"
    buf.append_received(scratch[10:15])  # not empty: an ordinary append after the rest
    assert buf.read(12) == b"012345678901"
    buf.retrieve(1)
    buf.append_received(scratch[20:23])
    assert buf.read_all() == b"34012"
    assert buf.is_empty()
    buf.release()
    assert buf.capacity == CHEAP_PREPEND


def test_read_from_socket_through_scratch() -> None:
    a, b = socket.socketpair()
    a.setblocking(False)
    scratch = memoryview(bytearray(64))
    buf = Buffer()
    try:
        with pytest.raises(BlockingIOError):
            buf.read_from(a, scratch)
        b.sendall(b"z" * 100)
        assert buf.read_from(a, scratch) == 64, "one recv_into, at most the scratch size"
        assert buf.read_from(a, scratch) == 36
        assert buf.read_all() == b"z" * 100
        b.sendall(b"tail")
        b.close()
        assert buf.read_from(a, scratch) == 4
        assert buf.read_from(a, scratch) == 0, "end of stream"
        assert buf.read_all() == b"tail"
    finally:
        a.close()
        b.close()


# -- property tests against a bytes model --------------------------------------------------

chunks = st.binary(min_size=0, max_size=3000)
ops = st.lists(
    st.one_of(
        st.tuples(st.just("append"), chunks),
        st.tuples(st.just("append_received"), chunks),
        st.tuples(st.just("retrieve"), st.integers(0, 4000)),
        st.tuples(st.just("read"), st.integers(0, 4000)),
        st.tuples(st.just("prepend"), st.binary(min_size=0, max_size=CHEAP_PREPEND)),
        st.tuples(st.just("int"), st.sampled_from(WIDTHS)),
        st.tuples(st.just("shrink"), st.integers(0, 100)),
        st.tuples(st.just("ensure"), st.integers(0, 5000)),
        st.tuples(st.just("release"), st.none()),
        st.tuples(st.just("read_all"), st.none()),
    ),
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(ops)
def test_any_sequence_of_operations_matches_a_bytes_model(
    sequence: list[tuple[str, object]],
) -> None:
    buf = Buffer()
    model = b""
    for op, arg in sequence:
        if op == "append":
            assert isinstance(arg, bytes)
            buf.append(arg)
            model += arg
        elif op == "append_received":
            assert isinstance(arg, bytes)
            buf.append_received(memoryview(arg))
            model += arg
        elif op == "retrieve":
            assert isinstance(arg, int)
            buf.retrieve(arg)
            model = model[arg:]
        elif op == "read":
            assert isinstance(arg, int)
            if arg <= len(model):
                assert buf.read(arg) == model[:arg]
                model = model[arg:]
            else:
                with pytest.raises(ValueError):
                    buf.read(arg)
        elif op == "prepend":
            assert isinstance(arg, bytes)
            if len(arg) <= buf.prependable_bytes:
                buf.prepend(arg)
                model = arg + model
        elif op == "int":
            assert isinstance(arg, int)
            value = int.from_bytes(model[:arg], "big") if len(model) >= arg else None
            if value is not None:
                assert buf.read_int(arg) == value
                model = model[arg:]
        elif op == "shrink":
            assert isinstance(arg, int)
            buf.shrink(arg)
            assert buf.writable_bytes == arg
        elif op == "ensure":
            assert isinstance(arg, int)
            buf.ensure_writable(arg)
            assert buf.writable_bytes >= arg
        elif op == "release":
            buf.release()
        elif op == "read_all":
            assert buf.read_all() == model
            model = b""
        check_regions(buf)
        assert bytes(buf.peek()) == model
        assert buf.is_empty() == (not model)
    assert buf.read_all() == model


@settings(max_examples=200, deadline=None)
@given(
    st.binary(min_size=0, max_size=400),
    st.lists(st.integers(0, 400), max_size=8),
)
def test_line_search_at_every_split(data: bytes, cuts: list[int]) -> None:
    """Appending the same bytes in any chunks finds the same CRLF / LF offsets."""
    data = data.replace(b"\r", b"\r\n", 3)
    points = sorted({min(c, len(data)) for c in cuts})
    buf = Buffer()
    prev = 0
    for p in [*points, len(data)]:
        buf.append(data[prev:p])
        prev = p
        seen = data[:p]
        assert buf.find_crlf() == seen.find(b"\r\n")
        assert buf.find_eol() == seen.find(b"\n")
    for start in range(0, len(data) + 1, 7):
        assert buf.find_crlf(start) == data.find(b"\r\n", start)
