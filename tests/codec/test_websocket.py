"""RFC 6455 framing: the RFC's own examples, every read split, round trips, every bad input
with its close code, and the limits checked from the header alone."""

from __future__ import annotations

import itertools
import struct

import pytest
from codec_support import byte_by_byte
from hypothesis import given, settings
from hypothesis import strategies as st

from ioreactor.codec.websocket import (
    BinaryMessage,
    Close,
    Event,
    MessageTooBigError,
    Opcode,
    Ping,
    Pong,
    TextMessage,
    WebSocketDecoder,
    WebSocketEncoder,
    WebSocketError,
    WebSocketProtocolError,
    apply_mask,
    valid_close_code,
)
from ioreactor.net.buffer import Buffer
from support.websocket_peer import (
    BINARY,
    CLOSE,
    CONTINUATION,
    PING,
    PONG,
    RSV1,
    RSV2,
    RSV3,
    TEXT,
    FrameReader,
    build_frame,
    close_payload,
    xor_mask,
)


def decode_reads(
    reads: list[bytes], *, server: bool = True, **limits: int
) -> tuple[list[Event], Buffer]:
    """Feed each read to one decoder through one Buffer, as a connection does."""
    decoder = WebSocketDecoder(server=server, **limits)
    buffer = Buffer()
    events: list[Event] = []
    for chunk in reads:
        buffer.append(chunk)
        decoder.decode(buffer, events)
    return events, buffer


def assert_every_split(stream: bytes, expected: list[Event], *, server: bool = True) -> None:
    """The same events however the stream is cut: one read, a byte a read, two reads at
    every cut."""
    assert decode_reads([stream], server=server)[0] == expected
    events, rest = decode_reads(byte_by_byte(stream), server=server)
    assert events == expected
    assert len(rest) == 0
    for cut in range(1, len(stream)):
        events, rest = decode_reads([stream[:cut], stream[cut:]], server=server)
        assert events == expected, f"cut at byte {cut}"
        assert len(rest) == 0


def raises_code(reads: list[bytes], code: int, *, server: bool = True, **limits: int) -> None:
    with pytest.raises(WebSocketError) as info:
        decode_reads(reads, server=server, **limits)
    assert info.value.code == code, info.value


# -- RFC 6455 §5.7, byte for byte --------------------------------------------------------

HELLO = b"Hello"


def test_rfc_single_frame_unmasked_text() -> None:
    wire = bytes([0x81, 0x05, 0x48, 0x65, 0x6C, 0x6C, 0x6F])
    assert_every_split(wire, [TextMessage("Hello")], server=False)
    assert WebSocketEncoder(server=True).text("Hello") == wire


def test_rfc_single_frame_masked_text() -> None:
    wire = bytes([0x81, 0x85, 0x37, 0xFA, 0x21, 0x3D, 0x7F, 0x9F, 0x4D, 0x51, 0x58])
    assert_every_split(wire, [TextMessage("Hello")])


def test_rfc_fragmented_unmasked_text() -> None:
    wire = bytes([0x01, 0x03, 0x48, 0x65, 0x6C, 0x80, 0x02, 0x6C, 0x6F])
    assert_every_split(wire, [TextMessage("Hello")], server=False)
    assert WebSocketEncoder(server=True).message(HELLO, Opcode.TEXT, fragment_size=3) == wire


def test_rfc_ping_and_masked_pong() -> None:
    ping = bytes([0x89, 0x05, 0x48, 0x65, 0x6C, 0x6C, 0x6F])
    pong = bytes([0x8A, 0x85, 0x37, 0xFA, 0x21, 0x3D, 0x7F, 0x9F, 0x4D, 0x51, 0x58])
    assert_every_split(ping, [Ping(HELLO)], server=False)
    assert_every_split(pong, [Pong(HELLO)])
    assert WebSocketEncoder(server=True).ping(HELLO) == ping


@pytest.mark.parametrize(
    ("size", "header"),
    [
        (125, bytes([0x82, 125])),
        (126, bytes([0x82, 0x7E, 0x00, 0x7E])),
        (256, bytes([0x82, 0x7E, 0x01, 0x00])),
        (65535, bytes([0x82, 0x7E, 0xFF, 0xFF])),
        (65536, bytes([0x82, 0x7F, 0, 0, 0, 0, 0, 1, 0, 0])),
    ],
    ids=["7-bit-max", "16-bit-min", "rfc-256", "16-bit-max", "rfc-64-bit"],
)
def test_length_classes_on_the_wire(size: int, header: bytes) -> None:
    payload = bytes(i % 251 for i in range(size))
    wire = WebSocketEncoder(server=True).binary(payload)
    assert wire == header + payload
    assert decode_reads([wire], server=False)[0] == [BinaryMessage(payload)]
    masked = build_frame(BINARY, payload)
    assert decode_reads([masked])[0] == [BinaryMessage(payload)]


# -- every read split --------------------------------------------------------------------


def test_a_conversation_split_at_every_byte() -> None:
    """Text, a fragmented text with control frames between its fragments, a 16-bit-length
    binary, an empty message, and a close: the same events for every cut."""
    euro = "€".encode()  # 3 bytes, split across fragments below
    stream = b"".join(
        [
            build_frame(TEXT, "héllo".encode()),
            build_frame(TEXT, b"ab" + euro[:1], fin=False),
            build_frame(PING, b"p1"),
            build_frame(CONTINUATION, euro[1:2], fin=False),
            build_frame(PONG, b""),
            build_frame(CONTINUATION, euro[2:] + b"cd"),
            build_frame(BINARY, bytes(range(256)) * 2),
            build_frame(BINARY, b""),
            build_frame(CLOSE, close_payload(4001, b"done")),
        ]
    )
    expected: list[Event] = [
        TextMessage("héllo"),
        Ping(b"p1"),
        Pong(b""),
        TextMessage("ab€cd"),
        BinaryMessage(bytes(range(256)) * 2),
        BinaryMessage(b""),
        Close(4001, "done"),
    ]
    assert_every_split(stream, expected)


def test_a_64_bit_frame_fed_byte_by_byte() -> None:
    payload = bytes(i % 256 for i in range(70000))
    stream = build_frame(BINARY, payload) + build_frame(TEXT, b"after")
    events, rest = decode_reads(byte_by_byte(stream))
    assert events == [BinaryMessage(payload), TextMessage("after")]
    assert len(rest) == 0


def test_many_frames_in_one_read_are_decoded_in_one_pass() -> None:
    frames = [build_frame(TEXT, f"m{i}".encode()) for i in range(50)]
    buffer = Buffer(b"".join(frames) + frames[0][:3])
    events: list[Event] = []
    WebSocketDecoder(server=True).decode(buffer, events)
    assert events == [TextMessage(f"m{i}") for i in range(50)]
    assert buffer.read_all() == frames[0][:3]


def test_nothing_is_decoded_after_a_close_frame() -> None:
    stream = build_frame(CLOSE, close_payload(1000)) + build_frame(TEXT, b"late")
    events, rest = decode_reads([stream])
    assert events == [Close(1000, "")]
    assert len(rest) == len(build_frame(TEXT, b"late"))


# -- round trips (hypothesis) ------------------------------------------------------------

#: Sizes around every length-class boundary, and inside each class.
sizes = st.one_of(
    st.sampled_from([0, 1, 125, 126, 127, 65535, 65536, 65537]),
    st.integers(0, 125),
    st.integers(126, 65535),
    st.integers(65536, 140000),
)


@st.composite
def messages(draw: st.DrawFn) -> tuple[int, bytes, int | None]:
    """(opcode, payload, fragment_size or None): text is valid UTF-8 of about ``size``."""
    size = draw(sizes)
    seed = draw(st.binary(min_size=1, max_size=64))
    if draw(st.booleans()):
        text = draw(st.text(min_size=1, max_size=16))
        payload = (text * (size // max(1, len(text.encode())) + 1)).encode()[:size]
        payload = payload.decode(errors="ignore").encode()  # a cut may split a character
        opcode = TEXT
    else:
        payload = (seed * (size // len(seed) + 1))[:size]
        opcode = BINARY
    fragment = draw(st.one_of(st.none(), st.integers(1, max(1, size))))
    return opcode, payload, fragment


@settings(max_examples=60, deadline=None)
@given(
    batch=st.lists(messages(), min_size=1, max_size=4),
    pings=st.lists(st.binary(max_size=125), max_size=3),
    client_to_server=st.booleans(),
    cuts=st.lists(st.integers(0, 1 << 20), max_size=6),
)
def test_round_trip_every_opcode_length_and_fragmentation(
    batch: list[tuple[int, bytes, int | None]],
    pings: list[bytes],
    client_to_server: bool,
    cuts: list[int],
) -> None:
    """Encode -> decode gives the messages back, whatever the length class, the fragment
    size, the direction (masked or not), the control frames in between and the reads."""
    encoder = WebSocketEncoder(server=not client_to_server)
    wire = b""
    expected: list[Event] = []
    for i, (opcode, payload, fragment_size) in enumerate(batch):
        wire += encoder.message(payload, opcode, fragment_size=fragment_size)
        expected.append(TextMessage(payload.decode()) if opcode == TEXT else BinaryMessage(payload))
        if i < len(pings):
            wire += encoder.ping(pings[i]) + encoder.pong(pings[i])
            expected += [Ping(pings[i]), Pong(pings[i])]
    wire += encoder.close(3999, "bye")
    expected.append(Close(3999, "bye"))
    points = sorted({c % (len(wire) + 1) for c in cuts} | {0, len(wire)})
    reads = [wire[a:b] for a, b in itertools.pairwise(points)]
    events, rest = decode_reads(reads, server=client_to_server, max_message_size=1 << 20)
    assert events == expected
    assert len(rest) == 0


@settings(max_examples=100, deadline=None)
@given(payload=st.binary(max_size=9000), key=st.binary(min_size=4, max_size=4))
def test_apply_mask_matches_the_rfc_loop_on_both_paths(payload: bytes, key: bytes) -> None:
    assert apply_mask(payload, key) == xor_mask(payload, key)
    assert apply_mask(apply_mask(payload, key), key) == payload


def test_apply_mask_large_payload() -> None:
    payload = bytes(i % 253 for i in range(1 << 20))
    key = b"\x01\x80\xfe\x7f"
    assert apply_mask(payload, key) == xor_mask(payload, key)


# -- the encoder -------------------------------------------------------------------------


def test_server_frames_are_unmasked_client_frames_masked_with_fresh_keys() -> None:
    server = WebSocketEncoder(server=True).text("same")
    assert server[1] & 0x80 == 0
    client = WebSocketEncoder(server=False)
    first, second = client.text("same"), client.text("same")
    assert first[1] & 0x80 and second[1] & 0x80
    assert first[2:6] != second[2:6], "each frame gets its own masking key"
    reader = FrameReader()
    assert [f.payload for f in reader.feed(first + second)] == [b"same", b"same"]


def test_encoder_refuses_what_may_not_be_sent() -> None:
    encoder = WebSocketEncoder(server=True)
    with pytest.raises(ValueError, match="at most 125"):
        encoder.ping(b"x" * 126)
    for code in (999, 1004, 1005, 1006, 1015, 2999, 5000):
        with pytest.raises(ValueError, match="may not be sent"):
            encoder.close(code)
    with pytest.raises(ValueError, match="exceeds 123"):
        encoder.close(1000, "é" * 62)
    with pytest.raises(ValueError, match="needs a close code"):
        encoder.close(None, "why")
    assert encoder.close(None) == bytes([0x88, 0x00])
    assert encoder.close(4999, "r") == bytes([0x88, 0x03]) + struct.pack("!H", 4999) + b"r"


# -- close codes kept exactly as sent ----------------------------------------------------

SENDABLE = [
    1000,
    1001,
    1002,
    1003,
    1007,
    1008,
    1009,
    1010,
    1011,
    1012,
    1013,
    1014,
    3000,
    3999,
    4000,
    4999,
]
NOT_SENDABLE = [0, 999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000, 65535]


@pytest.mark.parametrize("code", SENDABLE)
def test_close_codes_arrive_exactly_as_sent(code: int) -> None:
    reason = "réason".encode()
    events, _ = decode_reads([build_frame(CLOSE, close_payload(code, reason))])
    assert events == [Close(code, "réason")]
    assert valid_close_code(code)


def test_close_without_a_code_reports_1005() -> None:
    assert decode_reads([build_frame(CLOSE)])[0] == [Close(1005, "")]


@pytest.mark.parametrize("code", NOT_SENDABLE)
def test_close_code_that_may_not_be_sent_is_a_protocol_error(code: int) -> None:
    raises_code([build_frame(CLOSE, close_payload(code))], 1002)
    assert not valid_close_code(code)


# -- bad input: each with its close code -------------------------------------------------

BAD_FRAMES = [
    pytest.param([build_frame(TEXT, b"x", mask=False)], 1002, id="unmasked-client-frame"),
    pytest.param([build_frame(TEXT, b"x", rsv=RSV1)], 1002, id="rsv1-without-extension"),
    pytest.param([build_frame(TEXT, b"x", rsv=RSV2)], 1002, id="rsv2"),
    pytest.param([build_frame(BINARY, b"x", rsv=RSV3)], 1002, id="rsv3"),
    *[
        pytest.param([build_frame(op, b"x")], 1002, id=f"reserved-opcode-{op:#x}")
        for op in (3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF)
    ],
    pytest.param([build_frame(PING, b"x" * 126)], 1002, id="ping-over-125"),
    pytest.param([build_frame(CLOSE, b"\x03\xe8" + b"x" * 124)], 1002, id="close-over-125"),
    pytest.param([build_frame(PONG, b"x", fin=False)], 1002, id="fragmented-pong"),
    pytest.param([build_frame(PING, b"x", fin=False)], 1002, id="fragmented-ping"),
    pytest.param([build_frame(CONTINUATION, b"x")], 1002, id="continuation-without-start"),
    pytest.param(
        [build_frame(TEXT, b"a", fin=False), build_frame(BINARY, b"b")],
        1002,
        id="new-message-inside-fragmented",
    ),
    pytest.param(
        [build_frame(TEXT, b"a", fin=False), build_frame(TEXT, b"b")],
        1002,
        id="new-text-inside-fragmented",
    ),
    pytest.param([build_frame(CLOSE, b"\x03")], 1002, id="close-one-byte-payload"),
    pytest.param([build_frame(CLOSE, b"\x03\xe8\xff")], 1007, id="close-reason-bad-utf8"),
    pytest.param([build_frame(TEXT, b"\xff")], 1007, id="text-bad-utf8"),
    pytest.param([build_frame(TEXT, b"\xed\xa0\x80")], 1007, id="text-utf16-surrogate"),
    pytest.param([build_frame(TEXT, b"ok\xe2\x82")], 1007, id="text-truncated-utf8"),
    pytest.param(
        [build_frame(TEXT, b"a\xe2", fin=False), build_frame(CONTINUATION, b"\x82")],
        1007,
        id="fragmented-text-truncated-at-fin",
    ),
    pytest.param([build_frame(BINARY, b"", length=1 << 63)[:10]], 1002, id="64-bit-length-top-bit"),
]


@pytest.mark.parametrize(("reads", "code"), BAD_FRAMES)
def test_bad_input_raises_its_close_code(reads: list[bytes], code: int) -> None:
    raises_code(reads, code)


def test_masked_frame_on_a_client_is_a_protocol_error() -> None:
    raises_code([build_frame(TEXT, b"x", mask=True)], 1002, server=False)


def test_invalid_utf8_fails_fast_before_the_last_fragment() -> None:
    """A fragment that can never become valid UTF-8 fails at once, not at FIN."""
    reads = [build_frame(TEXT, b"ok", fin=False), build_frame(CONTINUATION, b"\xc0\xaf", fin=False)]
    raises_code(reads, 1007)


def test_events_before_a_bad_frame_are_kept_and_consumed() -> None:
    good = build_frame(TEXT, b"one") + build_frame(PING, b"p")
    bad = build_frame(0x3, b"x")
    decoder = WebSocketDecoder(server=True)
    buffer = Buffer(good + bad)
    events: list[Event] = []
    with pytest.raises(WebSocketProtocolError, match="reserved opcode"):
        decoder.decode(buffer, events)
    assert events == [TextMessage("one"), Ping(b"p")]
    assert buffer.read_all() == bad, "the bad frame stays, the good ones are consumed"
    assert decoder.closed
    buffer.append(build_frame(TEXT, b"more"))
    decoder.decode(buffer, events)
    assert len(events) == 2, "nothing is decoded after a violation"


# -- limits, from the header alone -------------------------------------------------------


def test_frame_over_max_frame_size_is_refused_from_its_header() -> None:
    header = build_frame(BINARY, b"", length=1 << 40)[:14]  # header + key, no payload at all
    buffer = Buffer(header)
    with pytest.raises(MessageTooBigError) as info:
        WebSocketDecoder(server=True, max_frame_size=1 << 20).decode(buffer, [])
    assert info.value.code == 1009
    assert buffer.capacity < 64, "nothing reserved for the announced payload"


def test_frame_at_max_frame_size_passes_one_over_fails() -> None:
    limit = 1000
    ok = build_frame(BINARY, b"x" * limit)
    assert decode_reads([ok], max_frame_size=limit)[0] == [BinaryMessage(b"x" * limit)]
    raises_code([build_frame(BINARY, b"x" * (limit + 1))[:8]], 1009, max_frame_size=limit)


def test_message_over_max_message_size_across_fragments_fails_at_the_header() -> None:
    limit = 300
    first = build_frame(BINARY, b"a" * 200, fin=False)
    second_header = build_frame(CONTINUATION, b"b" * 101)[:6]  # 200 + 101 > 300
    raises_code([first, second_header], 1009, max_message_size=limit)
    exact = first + build_frame(CONTINUATION, b"b" * 100)
    assert decode_reads([exact], max_message_size=limit)[0] == [
        BinaryMessage(b"a" * 200 + b"b" * 100)
    ]


def test_control_frames_do_not_count_toward_the_message() -> None:
    stream = (
        build_frame(TEXT, b"a" * 100, fin=False)
        + build_frame(PING, b"p" * 125)
        + build_frame(CONTINUATION, b"b" * 100)
    )
    events, _ = decode_reads([stream], max_message_size=200)
    assert events == [Ping(b"p" * 125), TextMessage("a" * 100 + "b" * 100)]


def test_limits_are_validated() -> None:
    with pytest.raises(ValueError):
        WebSocketDecoder(server=True, max_frame_size=100)
    with pytest.raises(ValueError):
        WebSocketDecoder(server=True, max_message_size=0)
