"""WebSocketSession, sans-I/O: the close handshake both ways, failing the connection,
keep-alive pings and every timeout, on a hand-driven clock and a recording transport."""

from __future__ import annotations

import pytest

from ioreactor.codec.websocket import BinaryMessage, Close, Ping, TextMessage
from ioreactor.codec.websocket_session import (
    CLOSED,
    CLOSING,
    OPEN,
    CloseTimeoutError,
    PeerSilentError,
    WebSocketSession,
)
from ioreactor.net.buffer import Buffer
from ioreactor.testing import MockClock
from support.websocket_peer import (
    BINARY,
    CLOSE,
    PING,
    PONG,
    TEXT,
    Frame,
    FrameReader,
    build_frame,
    close_payload,
)


class Recorder:
    """A transport that records what the session does to it."""

    def __init__(self) -> None:
        self.reader = FrameReader()
        self.frames: list[Frame] = []
        self.raw: list[bytes] = []
        self.calls: list[str] = []

    def send(self, data: bytes) -> None:
        self.raw.append(data)
        self.frames.extend(self.reader.feed(data))
        self.calls.append("send")

    def shutdown(self) -> None:
        self.calls.append("shutdown")

    def close(self) -> None:
        self.calls.append("close")


def make(**options: object) -> tuple[WebSocketSession, Recorder, MockClock, list[float]]:
    transport = Recorder()
    clock = MockClock(100.0)
    moved: list[float] = []

    def on_moved(session: WebSocketSession) -> None:
        assert session.deadline is not None
        moved.append(session.deadline)

    session = WebSocketSession(
        transport,
        server=True,
        clock=clock,
        on_deadline_moved=on_moved,
        **options,  # type: ignore[arg-type]
    )
    return session, transport, clock, moved


def feed(session: WebSocketSession, *frames: bytes) -> list[object]:
    buffer = Buffer(b"".join(frames))
    events: list[object] = list(session.receive(buffer))
    return events


# -- messages and pings ------------------------------------------------------------------


def test_messages_in_and_out() -> None:
    session, transport, _, _ = make()
    assert feed(session, build_frame(TEXT, b"hi"), build_frame(BINARY, b"\x00")) == [
        TextMessage("hi"),
        BinaryMessage(b"\x00"),
    ]
    assert session.send_text("a") and session.send_binary(b"b")
    assert session.send("c", fragment_size=1) and session.send(b"dd", fragment_size=1)
    assert session.send_ping(b"1") and session.send_pong(b"2")
    frames = transport.frames
    assert [(f.opcode, f.payload, f.fin) for f in frames] == [
        (TEXT, b"a", True),
        (BINARY, b"b", True),
        (TEXT, b"c", True),
        (BINARY, b"d", False),
        (0, b"d", True),
        (PING, b"1", True),
        (PONG, b"2", True),
    ]


def test_pings_are_answered_with_their_payload() -> None:
    session, transport, _, _ = make()
    events = feed(session, build_frame(PING, b"abc"), build_frame(TEXT, b"t"), build_frame(PING))
    assert events == [Ping(b"abc"), TextMessage("t"), Ping(b"")]
    assert [(f.opcode, f.payload) for f in transport.frames] == [(PONG, b"abc"), (PONG, b"")]


# -- the close handshake -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "reason"), [(1000, b""), (1001, b"going"), (3000, b"x"), (4999, "é".encode())]
)
def test_peer_close_is_echoed_exactly_and_the_connection_closed(code: int, reason: bytes) -> None:
    session, transport, _, _ = make()
    events = feed(
        session, build_frame(CLOSE, close_payload(code, reason)), build_frame(TEXT, b"late")
    )
    assert events == [Close(code, reason.decode())]
    assert (session.close_code, session.close_reason) == (code, reason.decode())
    assert transport.frames[-1].close_code() == (code, reason)
    assert transport.calls == ["send", "shutdown"], "echo, then FIN: the peer closes next"
    assert session.state is CLOSED and session.error is None
    assert feed(session, build_frame(TEXT, b"more")) == []
    assert not session.send_text("too late")


def test_peer_close_without_code_gets_an_empty_close() -> None:
    session, transport, _, _ = make()
    assert feed(session, build_frame(CLOSE)) == [Close(1005, "")]
    assert transport.frames[-1].payload == b""
    assert session.close_code == 1005


def test_our_close_waits_for_the_peer_then_closes() -> None:
    session, transport, clock, moved = make(close_timeout=5.0)
    session.close(4000, "bye")
    assert session.state is CLOSING
    assert transport.frames[-1].close_code() == (4000, b"bye")
    assert moved == [clock.now + 5.0]
    assert not session.send_text("after close")
    # Messages the peer sent before it saw our close still arrive.
    events = feed(session, build_frame(TEXT, b"in flight"), build_frame(CLOSE, close_payload(4000)))
    assert events == [TextMessage("in flight"), Close(4000, "")]
    assert transport.calls == ["send", "shutdown"], "no second close frame, then FIN"
    assert session.state is CLOSED and session.error is None


def test_a_peer_that_keeps_its_side_open_is_closed_after_close_timeout() -> None:
    session, transport, clock, moved = make(close_timeout=5.0)
    feed(session, build_frame(CLOSE, close_payload(1000)))
    assert moved == [clock.now + 5.0]
    clock.now += 5.0
    session.on_timer(clock.now)
    assert transport.calls == ["send", "shutdown", "close"]
    assert session.error is None, "the handshake itself was complete"


def test_close_timeout_when_the_peer_never_answers() -> None:
    session, transport, clock, _ = make(close_timeout=5.0)
    session.close()
    assert session.deadline == clock.now + 5.0
    clock.now += 4.9
    session.on_timer(clock.now)
    assert session.state is CLOSING
    clock.now += 0.1
    session.on_timer(clock.now)
    assert session.state is CLOSED
    assert transport.calls == ["send", "close"]
    assert isinstance(session.error, CloseTimeoutError)


def test_close_refuses_codes_that_may_not_be_sent() -> None:
    session, transport, _, _ = make()
    with pytest.raises(ValueError):
        session.close(1005)
    assert session.state is OPEN and transport.calls == []


def test_connection_lost_without_close_reports_1006() -> None:
    session, _, _, _ = make()
    session.connection_lost()
    assert session.state is CLOSED and session.close_code == 1006


# -- failing the connection --------------------------------------------------------------


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        (build_frame(TEXT, b"x", mask=False), 1002),
        (build_frame(TEXT, b"\xff"), 1007),
        (build_frame(BINARY, b"", length=2_000_000)[:14], 1009),
    ],
)
def test_violation_sends_its_code_then_half_closes(frame: bytes, code: int) -> None:
    session, transport, clock, moved = make(close_timeout=3.0)
    events = feed(session, build_frame(TEXT, b"before"), frame)
    assert events == [TextMessage("before")], "what came before the violation is delivered"
    assert transport.frames[-1].close_code()[0] == code
    assert transport.calls == ["send", "shutdown"]
    assert session.state is CLOSED and session.error is not None
    assert session.sent_close_code == code
    assert moved == [clock.now + 3.0]
    # The peer keeps sending: discarded. It never closes: the transport is closed.
    assert feed(session, build_frame(TEXT, b"ignored")) == []
    clock.now += 3.0
    session.on_timer(clock.now)
    assert transport.calls == ["send", "shutdown", "close"]


def test_reason_of_a_violation_fits_a_close_frame() -> None:
    session, transport, _, _ = make(max_frame_size=1000)
    feed(session, build_frame(BINARY, b"", length=10**15)[:14])
    payload = transport.frames[-1].payload
    assert len(payload) <= 125
    assert b"exceeds max_frame_size" in payload


# -- keep-alive --------------------------------------------------------------------------


def test_ping_after_silence_and_any_traffic_counts_as_an_answer() -> None:
    session, transport, clock, _ = make(ping_interval=10.0, ping_timeout=5.0)
    start = clock.now
    assert session.deadline == start + 10.0
    assert not session.ping_due(start + 9.9)
    clock.now = start + 10.0
    assert session.ping_due(clock.now)
    session.on_timer(clock.now)
    assert [f.opcode for f in transport.frames] == [PING]
    assert session.deadline == clock.now + 5.0, "now waiting for an answer"
    assert not session.ping_due(clock.now), "one ping per silence"
    clock.now += 4.0
    feed(session, build_frame(PONG))
    assert session.deadline == clock.now + 10.0, "heard from: a new interval"
    clock.now += 10.0
    session.on_timer(clock.now)
    assert [f.opcode for f in transport.frames] == [PING, PING]
    clock.now += 1.0
    feed(session, build_frame(TEXT, b"data counts too"))
    clock.now += 9.0
    session.on_timer(clock.now)
    assert session.state is OPEN and [f.opcode for f in transport.frames] == [PING, PING]


def test_silent_peer_is_failed_with_1011() -> None:
    session, transport, clock, _ = make(ping_interval=10.0, ping_timeout=5.0, close_timeout=2.0)
    clock.now += 10.0
    session.on_timer(clock.now)
    clock.now += 4.9
    session.on_timer(clock.now)
    assert session.state is OPEN
    clock.now += 0.1
    session.on_timer(clock.now)
    assert session.state is CLOSED
    assert transport.frames[-1].close_code() == (1011, b"keepalive ping timeout")
    assert isinstance(session.error, PeerSilentError)
    assert transport.calls[-1] == "shutdown"
    clock.now += 2.0
    session.on_timer(clock.now)
    assert transport.calls[-1] == "close"


def test_a_late_timer_pings_instead_of_condemning_the_peer() -> None:
    """After a stall of our own (the timer runs long after the interval and timeout),
    the peer gets its ping and its full timeout first."""
    session, transport, clock, _ = make(ping_interval=10.0, ping_timeout=5.0)
    clock.now += 60.0
    session.on_timer(clock.now)
    assert session.state is OPEN
    assert [f.opcode for f in transport.frames] == [PING]


def test_pings_can_be_switched_off() -> None:
    session, transport, clock, _ = make(ping_interval=None)
    assert session.deadline is None
    clock.now += 1e6
    assert not session.ping_due(clock.now)
    session.on_timer(clock.now)
    assert transport.calls == []


def test_options_are_validated() -> None:
    for bad in ({"ping_interval": 0}, {"ping_timeout": 0}, {"close_timeout": -1}):
        with pytest.raises(ValueError):
            make(**bad)


def test_a_client_session_masks_and_expects_unmasked_frames() -> None:
    transport = Recorder()
    session = WebSocketSession(transport, server=False, clock=MockClock())
    session.send_text("from the client")
    assert transport.raw[-1][1] & 0x80, "the mask bit is set"
    assert transport.frames[-1].payload == b"from the client"
    events = feed(session, build_frame(TEXT, b"from the server", mask=False))
    assert events == [TextMessage("from the server")]
    feed(session, build_frame(TEXT, b"masked", mask=True))
    assert transport.frames[-1].close_code()[0] == 1002
