"""permessage-deflate (RFC 7692): the RFC's examples, negotiation both ways, compression
round trips in every context-takeover and window setting, and the decompression-bomb
limit."""

from __future__ import annotations

import tracemalloc
import zlib

import pytest
from codec_support import byte_by_byte
from hypothesis import given, settings
from hypothesis import strategies as st

from ioreactor.codec.websocket import (
    BinaryMessage,
    Event,
    Opcode,
    Ping,
    TextMessage,
    WebSocketDecoder,
    WebSocketEncoder,
    WebSocketError,
)
from ioreactor.codec.websocket_deflate import (
    DeflateConfig,
    DeflateParameters,
    NegotiationError,
    PerMessageDeflate,
    parse_extensions,
)
from ioreactor.net.buffer import Buffer
from support.websocket_peer import BINARY, CONTINUATION, PING, RSV1, TEXT, build_frame


def client_decoder(params: DeflateParameters | None = None, **limits: int) -> WebSocketDecoder:
    deflate = PerMessageDeflate(params or DeflateParameters(), server=False)
    return WebSocketDecoder(server=False, deflate=deflate, **limits)


def decode(decoder: WebSocketDecoder, reads: list[bytes]) -> list[Event]:
    buffer = Buffer()
    events: list[Event] = []
    for chunk in reads:
        buffer.append(chunk)
        decoder.decode(buffer, events)
    assert len(buffer) == 0
    return events


# -- RFC 7692 §7.2.3, byte for byte ------------------------------------------------------

RFC_HELLO = bytes([0xF2, 0x48, 0xCD, 0xC9, 0xC9, 0x07, 0x00])


def test_rfc_one_compressed_frame() -> None:
    wire = bytes([0xC1, 0x07]) + RFC_HELLO
    assert decode(client_decoder(), [wire]) == [TextMessage("Hello")]
    assert decode(client_decoder(), byte_by_byte(wire)) == [TextMessage("Hello")]


def test_rfc_fragmented_compressed_message() -> None:
    wire = bytes([0x41, 0x03, 0xF2, 0x48, 0xCD, 0x80, 0x04, 0xC9, 0xC9, 0x07, 0x00])
    assert decode(client_decoder(), byte_by_byte(wire)) == [TextMessage("Hello")]


def test_rfc_second_message_shares_the_window() -> None:
    """With context takeover the second "Hello" is a back-reference into the first."""
    wire = bytes([0xC1, 0x07]) + RFC_HELLO + bytes([0xC1, 0x05, 0xF2, 0x00, 0x11, 0x00, 0x00])
    assert decode(client_decoder(), [wire]) == [TextMessage("Hello"), TextMessage("Hello")]


def test_rfc_stored_block_and_bfinal() -> None:
    stored = bytes([0xC1, 0x0B, 0x00, 0x05, 0x00, 0xFA, 0xFF]) + b"Hello" + b"\x00"
    bfinal = bytes([0xC1, 0x08, 0xF3, 0x48, 0xCD, 0xC9, 0xC9, 0x07, 0x00, 0x00])
    decoder = client_decoder()
    # A BFINAL message ends its stream; the message after it starts a new one.
    assert decode(decoder, [stored, bfinal, bfinal]) == [TextMessage("Hello")] * 3


def test_uncompressed_message_on_a_deflate_connection() -> None:
    wire = bytes([0x81, 0x05]) + b"Hello"
    assert decode(client_decoder(), [wire]) == [TextMessage("Hello")]


def test_compressor_output_matches_the_rfc() -> None:
    deflate = PerMessageDeflate(DeflateParameters(), server=True, level=6, mem_level=8)
    encoder = WebSocketEncoder(server=True, deflate=deflate)
    assert encoder.text("Hello") == bytes([0xC1, 0x07]) + RFC_HELLO


# -- negotiation, server side ------------------------------------------------------------

CONFIG = DeflateConfig()  # windows of 12 bits both ways
PLAIN = DeflateConfig(server_max_window_bits=None, client_max_window_bits=None)


@pytest.mark.parametrize(
    ("config", "offers", "response"),
    [
        (PLAIN, "permessage-deflate", "permessage-deflate"),
        (CONFIG, "permessage-deflate", "permessage-deflate; server_max_window_bits=12"),
        (
            CONFIG,
            "permessage-deflate; client_max_window_bits",
            "permessage-deflate; server_max_window_bits=12; client_max_window_bits=12",
        ),
        (
            PLAIN,
            "permessage-deflate; client_max_window_bits",
            "permessage-deflate",
        ),
        (
            CONFIG,
            "permessage-deflate; client_max_window_bits=10",
            "permessage-deflate; server_max_window_bits=12; client_max_window_bits=10",
        ),
        (
            PLAIN,
            "permessage-deflate; server_max_window_bits=10",
            "permessage-deflate; server_max_window_bits=10",
        ),
        (
            PLAIN,
            "permessage-deflate; server_max_window_bits=15",
            "permessage-deflate; server_max_window_bits=15",
        ),
        (
            CONFIG,
            "permessage-deflate; server_max_window_bits=14",
            "permessage-deflate; server_max_window_bits=12",
        ),
        (
            PLAIN,
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
        ),
        (
            DeflateConfig(server_no_context_takeover=True, client_no_context_takeover=True),
            "permessage-deflate",
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
            "server_max_window_bits=12",
        ),
        # The first offer zlib cannot honour (an 8-bit server window) is declined, the
        # next accepted; unknown extensions and bad offers are skipped.
        (
            PLAIN,
            "x-webkit-deflate-frame, permessage-deflate; server_max_window_bits=8, "
            "permessage-deflate; foo, permessage-deflate; client_max_window_bits=16, "
            "permessage-deflate; server_no_context_takeover=1, "
            'permessage-deflate; server_max_window_bits="9"',
            "permessage-deflate; server_max_window_bits=9",
        ),
        (PLAIN, "permessage-deflate; server_max_window_bits=8", None),
        (PLAIN, "permessage-deflate; client_max_window_bits; client_max_window_bits", None),
        (PLAIN, "x-unknown", None),
        (PLAIN, "", None),
    ],
)
def test_server_negotiation(config: DeflateConfig, offers: str, response: str | None) -> None:
    params = config.accept_offers(parse_extensions([offers]))
    assert (params.header_value() if params else None) == response


def test_server_never_compresses_with_an_8_bit_window() -> None:
    with pytest.raises(ValueError, match="zlib cannot use 8"):
        DeflateConfig(server_max_window_bits=8)


# -- negotiation, client side ------------------------------------------------------------


def test_client_offer() -> None:
    assert CONFIG.offer() == (
        "permessage-deflate; server_max_window_bits=12; client_max_window_bits=12"
    )
    assert PLAIN.offer() == "permessage-deflate; client_max_window_bits"
    strict = DeflateConfig(server_no_context_takeover=True, client_no_context_takeover=True)
    assert strict.offer().startswith(
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
    )


@pytest.mark.parametrize(
    ("config", "response", "expected"),
    [
        (PLAIN, "", None),
        (PLAIN, "permessage-deflate", DeflateParameters()),
        (
            PLAIN,
            "permessage-deflate; client_max_window_bits=9",
            DeflateParameters(client_max_window_bits=9),
        ),
        (
            CONFIG,
            "permessage-deflate; server_max_window_bits=10",
            DeflateParameters(server_max_window_bits=10, client_max_window_bits=12),
        ),
        (
            PLAIN,
            "permessage-deflate; server_no_context_takeover",
            DeflateParameters(server_no_context_takeover=True),
        ),
    ],
)
def test_client_accepts_valid_responses(
    config: DeflateConfig, response: str, expected: DeflateParameters | None
) -> None:
    assert config.check_response(parse_extensions([response] if response else [])) == expected


@pytest.mark.parametrize(
    ("config", "response", "why"),
    [
        (PLAIN, "x-other", "not offered"),
        (PLAIN, "permessage-deflate, permessage-deflate", "not offered"),
        (PLAIN, "permessage-deflate; client_max_window_bits=8", "zlib cannot"),
        (PLAIN, "permessage-deflate; client_max_window_bits", "must be an integer"),
        (CONFIG, "permessage-deflate; server_max_window_bits=13", "exceeds the offered 12"),
        (CONFIG, "permessage-deflate; client_max_window_bits=13", "exceeds the offered 12"),
        (
            DeflateConfig(server_no_context_takeover=True),
            "permessage-deflate",
            "ignored server_no_context_takeover",
        ),
        (PLAIN, "permessage-deflate; mystery", "unknown parameter"),
        (PLAIN, "permessage-deflate; server_no_context_takeover=yes", "takes no value"),
    ],
)
def test_client_refuses_invalid_responses(config: DeflateConfig, response: str, why: str) -> None:
    with pytest.raises(NegotiationError, match=why):
        config.check_response(parse_extensions([response]))


@pytest.mark.parametrize(
    ("values", "parsed"),
    [
        (["a"], [("a", [])]),
        (["A; B=1, c"], [("a", [("b", "1")]), ("c", [])]),
        (['a ; b = "1" ;c', "d"], [("a", [("b", "1"), ("c", None)]), ("d", [])]),
        ([", a ,, b,"], [("a", []), ("b", [])]),
        (['a; b="x,y;z"'], [("a", [("b", "x,y;z")])]),
    ],
)
def test_parse_extensions(
    values: list[str], parsed: list[tuple[str, list[tuple[str, str | None]]]]
) -> None:
    assert parse_extensions(values) == parsed


@pytest.mark.parametrize("value", ["a b", "a; =1", "a; b=", 'a; b="1', "a; b=1 2", "a;;"])
def test_parse_extensions_refuses_malformed(value: str) -> None:
    with pytest.raises(NegotiationError):
        parse_extensions([value])


# -- compression round trips -------------------------------------------------------------

TAKEOVER = [
    pytest.param(DeflateParameters(), id="takeover"),
    pytest.param(
        DeflateParameters(server_no_context_takeover=True, client_no_context_takeover=True),
        id="no-takeover",
    ),
    pytest.param(
        DeflateParameters(server_max_window_bits=9, client_max_window_bits=9), id="9-bit-windows"
    ),
    pytest.param(
        DeflateParameters(
            server_no_context_takeover=True, server_max_window_bits=10, client_max_window_bits=15
        ),
        id="mixed",
    ),
]


@pytest.mark.parametrize("params", TAKEOVER)
@pytest.mark.parametrize("client_to_server", [True, False], ids=["c2s", "s2c"])
def test_compressed_conversation_round_trips(
    params: DeflateParameters, client_to_server: bool
) -> None:
    sender = WebSocketEncoder(
        server=not client_to_server, deflate=PerMessageDeflate(params, server=not client_to_server)
    )
    receiver = WebSocketDecoder(
        server=client_to_server, deflate=PerMessageDeflate(params, server=client_to_server)
    )
    texts = ["", "hello " * 200, "é€😀" * 1000, "hello " * 200]
    blobs = [bytes(range(256)) * 300, b"", bytes(70000)]
    wire = b""
    expected: list[Event] = []
    for i, text in enumerate(texts):
        wire += sender.text(text) + sender.ping(b"between")
        expected += [TextMessage(text), Ping(b"between")]
        if i < len(blobs):
            wire += sender.message(blobs[i], Opcode.BINARY, fragment_size=1000)
            expected.append(BinaryMessage(blobs[i]))
    assert wire[0] & RSV1, "compressed messages set RSV1 on their first frame"
    cut = len(wire) // 3
    assert decode(receiver, [wire[:cut], wire[cut : 2 * cut], wire[2 * cut :]]) == expected


def test_context_takeover_shrinks_a_repeated_message() -> None:
    text = "the quick brown fox jumps over the lazy dog " * 20
    takeover = WebSocketEncoder(
        server=True, deflate=PerMessageDeflate(DeflateParameters(), server=True)
    )
    first, second = takeover.text(text), takeover.text(text)
    assert len(second) < len(first) // 4
    fresh = WebSocketEncoder(
        server=True,
        deflate=PerMessageDeflate(DeflateParameters(server_no_context_takeover=True), server=True),
    )
    assert len(fresh.text(text)) == len(fresh.text(text)) == len(first)


@settings(max_examples=40, deadline=None)
@given(
    chunks=st.lists(st.binary(max_size=3000), min_size=1, max_size=5),
    fragment_size=st.one_of(st.none(), st.integers(1, 500)),
    takeover=st.booleans(),
)
def test_compression_round_trip_property(
    chunks: list[bytes], fragment_size: int | None, takeover: bool
) -> None:
    params = DeflateParameters(client_no_context_takeover=not takeover)
    sender = WebSocketEncoder(server=False, deflate=PerMessageDeflate(params, server=False))
    receiver = WebSocketDecoder(server=True, deflate=PerMessageDeflate(params, server=True))
    wire = b"".join(sender.message(c, Opcode.BINARY, fragment_size=fragment_size) for c in chunks)
    assert decode(receiver, [wire]) == [BinaryMessage(c) for c in chunks]


# -- bad compressed input ----------------------------------------------------------------


def deflate_raw(data: bytes) -> bytes:
    """``data`` as one permessage-deflate payload, made with zlib directly."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    out = compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(b"\x00\x00\xff\xff")
    return out[:-4]


def bomb(size: int) -> bytes:
    return deflate_raw(bytes(size))


def test_decompression_bomb_stops_at_the_message_limit() -> None:
    """64 MiB of zeros in ~64 KiB on the wire: refused (1009) after inflating at most
    the limit, never the whole message."""
    payload = bomb(64 << 20)
    assert len(payload) < 128 << 10
    decoder = WebSocketDecoder(
        server=True,
        max_message_size=1 << 20,
        deflate=PerMessageDeflate(DeflateParameters(), server=True),
    )
    tracemalloc.start()
    try:
        with pytest.raises(WebSocketError) as info:
            decode(decoder, [build_frame(BINARY, payload, rsv=RSV1)])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert info.value.code == 1009
    assert peak < 4 << 20, f"peak {peak} bytes while refusing a 64 MiB bomb"


def test_bomb_spread_over_fragments_is_refused() -> None:
    payload = bomb(4 << 20)
    third = len(payload) // 3
    frames = [
        build_frame(BINARY, payload[:third], rsv=RSV1, fin=False),
        build_frame(CONTINUATION, payload[third : 2 * third], fin=False),
        build_frame(CONTINUATION, payload[2 * third :]),
    ]
    decoder = WebSocketDecoder(
        server=True,
        max_message_size=1 << 20,
        deflate=PerMessageDeflate(DeflateParameters(), server=True),
    )
    with pytest.raises(WebSocketError) as info:
        decode(decoder, frames)
    assert info.value.code == 1009


def test_inflated_size_exactly_at_the_limit_passes() -> None:
    limit = 100_000
    decoder = WebSocketDecoder(
        server=True,
        max_message_size=limit,
        deflate=PerMessageDeflate(DeflateParameters(), server=True),
    )
    assert decode(decoder, [build_frame(BINARY, bomb(limit), rsv=RSV1)]) == [
        BinaryMessage(bytes(limit))
    ]
    decoder = WebSocketDecoder(
        server=True,
        max_message_size=limit,
        deflate=PerMessageDeflate(DeflateParameters(), server=True),
    )
    with pytest.raises(WebSocketError) as info:
        decode(decoder, [build_frame(BINARY, bomb(limit + 1), rsv=RSV1)])
    assert info.value.code == 1009


@pytest.mark.parametrize(
    ("frames", "code"),
    [
        pytest.param([build_frame(TEXT, b"\xff\xff\xff\xff", rsv=RSV1)], 1002, id="corrupt-stream"),
        pytest.param(
            [
                build_frame(TEXT, b"a", rsv=RSV1, fin=False),
                build_frame(CONTINUATION, b"b", rsv=RSV1),
            ],
            1002,
            id="rsv1-on-continuation",
        ),
        pytest.param([build_frame(PING, b"p", rsv=RSV1)], 1002, id="rsv1-on-ping"),
        pytest.param([build_frame(TEXT, RFC_HELLO, rsv=RSV1)], None, id="valid-for-contrast"),
        pytest.param(
            [build_frame(TEXT, deflate_raw(b"ok \xff"), rsv=RSV1)], 1007, id="bad-utf8-inflated"
        ),
    ],
)
def test_bad_compressed_frames(frames: list[bytes], code: int | None) -> None:
    decoder = WebSocketDecoder(
        server=True, deflate=PerMessageDeflate(DeflateParameters(), server=True)
    )
    if code is None:
        assert decode(decoder, frames) == [TextMessage("Hello")]
        return
    with pytest.raises(WebSocketError) as info:
        decode(decoder, frames)
    assert info.value.code == code


def test_no_context_takeover_resets_the_decompressor() -> None:
    """With server_no_context_takeover agreed, a server that still refers back to the
    previous message (the RFC's second "Hello") is refused: the window was dropped."""
    second = bytes([0xC1, 0x05, 0xF2, 0x00, 0x11, 0x00, 0x00])
    first = bytes([0xC1, 0x07]) + RFC_HELLO
    assert decode(client_decoder(), [first, second]) == [TextMessage("Hello")] * 2
    decoder = client_decoder(DeflateParameters(server_no_context_takeover=True))
    assert decode(decoder, [first]) == [TextMessage("Hello")]
    with pytest.raises(WebSocketError, match="compressed message") as info:
        decode(decoder, [second])
    assert info.value.code == 1002
