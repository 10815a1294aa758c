"""Interop with a real peer: the ``websockets`` library's sans-I/O protocols
(``ClientProtocol`` / ``ServerProtocol``) produce and consume the bytes on the other end
of our codec, handshake included, with and without permessage-deflate negotiated by
websockets itself."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import pytest
from codec_support import byte_by_byte
from websockets.client import ClientProtocol
from websockets.extensions.permessage_deflate import (
    ClientPerMessageDeflateFactory,
    ServerPerMessageDeflateFactory,
)
from websockets.frames import Frame
from websockets.frames import Opcode as WsOpcode
from websockets.protocol import State
from websockets.server import ServerProtocol
from websockets.uri import parse_uri

from ioreactor.codec.websocket import (
    BinaryMessage,
    Close,
    Event,
    Opcode,
    Ping,
    Pong,
    TextMessage,
    WebSocketDecoder,
    WebSocketEncoder,
)
from ioreactor.codec.websocket_deflate import DeflateConfig, PerMessageDeflate
from ioreactor.codec.websocket_handshake import (
    Handshake,
    accept,
    check_response,
    client_request,
    new_key,
    parse_request_head,
    parse_response_head,
    validate_upgrade_request,
)
from ioreactor.net.buffer import Buffer

BIG = bytes(range(256)) * 800  # 200 KiB, 64-bit length class
TEXT = "héllo wörld € 😀 " * 500


class Ours:
    """Our end: an encoder and a decoder set up from what the handshake agreed."""

    def __init__(self, agreed: Handshake, *, server: bool, config: DeflateConfig | None) -> None:
        deflate = None
        if agreed.deflate is not None:
            assert config is not None
            deflate = PerMessageDeflate(
                agreed.deflate,
                server=server,
                level=config.compression_level,
                mem_level=config.mem_level,
            )
        self.encoder = WebSocketEncoder(server=server, deflate=deflate)
        self.decoder = WebSocketDecoder(server=server, deflate=deflate)
        self.buffer = Buffer()

    def feed(self, reads: Sequence[bytes]) -> list[Event]:
        events: list[Event] = []
        for chunk in reads:
            self.buffer.append(chunk)
            self.decoder.decode(self.buffer, events)
        assert len(self.buffer) == 0
        return events


def to_ours_as_client(
    server: ServerProtocol, config: DeflateConfig | None, subprotocols: Sequence[str] = ()
) -> Ours:
    """Our client's handshake against a websockets server."""
    key = new_key()
    server.receive_data(
        client_request("127.0.0.1", "/", key=key, deflate=config, subprotocols=subprotocols)
    )
    [request] = server.events_received()
    server.send_response(server.accept(request))
    raw = b"".join(server.data_to_send())
    head, rest = raw.split(b"\r\n\r\n", 1)
    assert rest == b""
    assert server.state is State.OPEN, server.handshake_exc
    agreed = check_response(
        parse_response_head(head), key=key, deflate=config, subprotocols=subprotocols
    )
    return Ours(agreed, server=False, config=config)


def to_ours_as_server(
    client: ClientProtocol, config: DeflateConfig | None, subprotocols: Sequence[str] = ()
) -> tuple[Ours, Handshake]:
    """A websockets client's handshake against our server helpers."""
    client.send_request(client.connect())
    raw = b"".join(client.data_to_send())
    head = parse_request_head(raw[: raw.index(b"\r\n\r\n")])
    request = validate_upgrade_request(head.method, head.version, head.headers, head.target)
    response, agreed = accept(request, deflate=config, subprotocols=subprotocols)
    client.receive_data(response)
    [_reply] = client.events_received()
    assert client.state is State.OPEN, client.handshake_exc
    return Ours(agreed, server=True, config=config), agreed


def messages_of(frames: list[Frame]) -> list[tuple[str, Any]]:
    """websockets' frames assembled into (kind, data) messages and control frames."""
    out: list[tuple[str, Any]] = []
    parts: list[bytes] = []
    kind = ""
    for frame in frames:
        if frame.opcode in (WsOpcode.TEXT, WsOpcode.BINARY):
            kind = "text" if frame.opcode == WsOpcode.TEXT else "binary"
            parts = []
        if frame.opcode in (WsOpcode.TEXT, WsOpcode.BINARY, WsOpcode.CONT):
            parts.append(bytes(frame.data))
            if frame.fin:
                data = b"".join(parts)
                out.append((kind, data.decode() if kind == "text" else data))
        else:
            out.append((frame.opcode.name.lower(), bytes(frame.data)))
    return out


# The deflate settings on both sides: (our config, websockets' factory settings).
DEFLATE_CASES = [
    pytest.param(None, None, id="no-deflate"),
    pytest.param(DeflateConfig(), {}, id="deflate-defaults"),
    pytest.param(
        DeflateConfig(server_max_window_bits=None, client_max_window_bits=None),
        {"server_max_window_bits": 10, "client_max_window_bits": 11},
        id="websockets-limits-windows",
    ),
    pytest.param(
        DeflateConfig(server_no_context_takeover=True, client_no_context_takeover=True),
        {},
        id="we-ask-no-takeover",
    ),
    pytest.param(
        DeflateConfig(server_max_window_bits=None, client_max_window_bits=None),
        {"server_no_context_takeover": True, "client_no_context_takeover": True},
        id="websockets-asks-no-takeover",
    ),
    pytest.param(DeflateConfig(), "declined", id="peer-without-deflate"),
]


def websockets_extensions(settings: Any, *, server: bool) -> list[Any]:
    if settings is None or settings == "declined":
        return []
    factory = ServerPerMessageDeflateFactory if server else ClientPerMessageDeflateFactory
    return [factory(**settings)]


@pytest.mark.parametrize(("config", "settings"), DEFLATE_CASES)
def test_our_client_against_websockets_server(config: DeflateConfig | None, settings: Any) -> None:
    server = ServerProtocol(
        extensions=websockets_extensions(settings, server=True), subprotocols=["chat"]
    )
    ours = to_ours_as_client(server, config, subprotocols=["other", "chat"])
    expect_deflate = config is not None and settings not in (None, "declined")
    assert (server.extensions != []) == expect_deflate

    # ours -> websockets: every message kind, fragmented, with controls in between.
    enc = ours.encoder
    wire = b"".join(
        [
            enc.text("hello"),
            enc.binary(BIG),
            enc.message(TEXT.encode(), Opcode.TEXT, fragment_size=1000),
            enc.ping(b"are you there"),
            enc.message(BIG, Opcode.BINARY, fragment_size=65536),
            enc.text(""),
        ]
    )
    if expect_deflate:
        assert wire[0] & 0x40, "the first message went compressed"
    for chunk in (wire[i : i + 4093] for i in range(0, len(wire), 4093)):
        server.receive_data(chunk)
    assert messages_of(server.events_received()) == [
        ("text", "hello"),
        ("binary", BIG),
        ("text", TEXT),
        ("ping", b"are you there"),
        ("binary", BIG),
        ("text", ""),
    ]
    # websockets answered the ping by itself.
    assert ours.feed([b"".join(server.data_to_send())]) == [Pong(b"are you there")]

    # websockets -> ours, cut at every byte for the small ones.
    server.send_text("x€y".encode())
    server.send_text(b"ab", fin=False)
    server.send_ping(b"between")
    server.send_continuation("cd€".encode(), fin=True)
    server.send_binary(b"\x00\xff" * 3)
    small = b"".join(server.data_to_send())
    expected: list[Event] = [
        TextMessage("x€y"),
        Ping(b"between"),
        TextMessage("abcd€"),
        BinaryMessage(b"\x00\xff" * 3),
    ]
    assert ours.feed(byte_by_byte(small)) == expected
    server.send_binary(BIG)
    server.send_text(TEXT.encode())
    assert ours.feed([b"".join(server.data_to_send())]) == [BinaryMessage(BIG), TextMessage(TEXT)]

    # Our close with a custom code reaches websockets exactly; its echo comes back.
    server.receive_data(enc.close(4321, "custom reason"))
    assert server.close_rcvd is not None
    assert (server.close_rcvd.code, server.close_rcvd.reason) == (4321, "custom reason")
    echo = ours.feed([b"".join(d for d in server.data_to_send() if d)])
    assert echo == [Close(4321, "custom reason")]


@pytest.mark.parametrize(("config", "settings"), DEFLATE_CASES)
def test_websockets_client_against_our_server(config: DeflateConfig | None, settings: Any) -> None:
    client = ClientProtocol(
        parse_uri("ws://127.0.0.1/"),
        extensions=websockets_extensions(settings, server=False),
        subprotocols=["chat", "superchat"],
    )
    ours, agreed = to_ours_as_server(client, config, subprotocols=["superchat"])
    assert agreed.subprotocol == "superchat" == client.subprotocol
    expect_deflate = config is not None and settings not in (None, "declined")
    assert (agreed.deflate is not None) == expect_deflate == (client.extensions != [])

    # websockets (masked client frames, maybe compressed) -> ours
    client.send_text(b"hello")
    client.send_binary(BIG)
    client.send_text(TEXT.encode()[:1001], fin=False)  # cuts a multi-byte character
    client.send_pong(b"unsolicited")
    client.send_continuation(TEXT.encode()[1001:], fin=True)
    client.send_ping(b"p")
    wire = b"".join(client.data_to_send())
    assert wire[1] & 0x80, "client frames are masked"
    expected: list[Event] = [
        TextMessage("hello"),
        BinaryMessage(BIG),
        Pong(b"unsolicited"),
        TextMessage(TEXT),
        Ping(b"p"),
    ]
    assert ours.feed([wire]) == expected
    # The same bytes in reads of every size from 1 to 7 bytes (a fresh pair each time).
    for step in (1, 7):
        fresh_client = ClientProtocol(
            parse_uri("ws://127.0.0.1/"), extensions=websockets_extensions(settings, server=False)
        )
        fresh, _ = to_ours_as_server(fresh_client, config)
        fresh_client.send_text(TEXT.encode())
        fresh_client.send_binary(BIG[:5000])
        data = b"".join(fresh_client.data_to_send())
        reads = [data[i : i + step] for i in range(0, len(data), step)]
        assert fresh.feed(reads) == [TextMessage(TEXT), BinaryMessage(BIG[:5000])]

    # ours (unmasked server frames) -> websockets
    enc = ours.encoder
    client.receive_data(
        enc.text(TEXT) + enc.message(BIG, Opcode.BINARY, fragment_size=3000) + enc.pong(b"p")
    )
    assert messages_of(client.events_received()) == [
        ("text", TEXT),
        ("binary", BIG),
        ("pong", b"p"),
    ]

    # websockets closes with a custom code: we read it exactly as sent.
    client.send_close(3007, "bye now")
    assert ours.feed([b"".join(client.data_to_send())]) == [Close(3007, "bye now")]
    client.receive_data(enc.close(3007, "bye now"))
    assert client.close_rcvd is not None and client.close_rcvd.code == 3007


@pytest.mark.parametrize(("config", "settings"), DEFLATE_CASES[1:5])
def test_compressed_streams_stay_in_step_over_many_messages(
    config: DeflateConfig, settings: Any
) -> None:
    """Context takeover (or not) agrees on both ends over a long conversation."""
    client = ClientProtocol(
        parse_uri("ws://127.0.0.1/"), extensions=websockets_extensions(settings, server=False)
    )
    ours, agreed = to_ours_as_server(client, config)
    assert agreed.deflate is not None
    words = ["alpha", "beta", "gamma", "delta"]
    sent = [" ".join(p) * 20 for p in itertools.islice(itertools.permutations(words), 24)]
    for text in sent:
        client.send_text(text.encode())
    assert ours.feed([b"".join(client.data_to_send())]) == [TextMessage(t) for t in sent]
    client.receive_data(b"".join(ours.encoder.text(t) for t in sent))
    assert messages_of(client.events_received()) == [("text", t) for t in sent]
