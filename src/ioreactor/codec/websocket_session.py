"""A WebSocket connection after its handshake, and a Handler that serves WebSocket on TCP.

Data flow::

    input Buffer -> WebSocketSession.receive -> decoder -> events (pings answered, a close
      echoed) -> WebSocketHandler.on_text / on_binary / on_ping / on_pong
    session.send_text / send_binary / send_ping / close -> encoder -> transport.send
    timing wheel -> session.on_timer(now): ping a silent peer, give up on a peer silent
      after the ping, end a close handshake the peer never finishes

:class:`WebSocketSession` is sans-I/O over any transport with ``send``, ``shutdown`` and
``close`` (a :class:`~ioreactor.net.connection.TcpConnection`, or a test's stand-in),
and owns no timer: whoever drives it reads :attr:`WebSocketSession.deadline` and calls
:meth:`WebSocketSession.on_timer` then (:class:`WebSocketHandler` keeps one timing-wheel
entry per connection; the session reports a deadline that moves earlier through
``on_deadline_moved``). The states:

=======  ====================================  ============================================
state    a close frame from the peer           close(), a violation, a timer
=======  ====================================  ============================================
OPEN     echo it, FIN -> CLOSED                close(): send a close frame -> CLOSING
                                               violation: close frame with its code
                                               (1002/1007/1009), FIN -> CLOSED
                                               silent after a ping: 1011, FIN -> CLOSED
CLOSING  FIN -> CLOSED                         close_timeout: close TCP -> CLOSED
CLOSED   (input discarded)                     close_timeout: close TCP
=======  ====================================  ============================================

Once the close frames have crossed (or this end failed the connection) the session
half-closes: its FIN tells the peer to close its side, which ends the connection
(``connection_lost``); a peer that does not is closed ``close_timeout`` later. Closing
at once instead would turn any bytes still arriving into a reset, which can destroy
the close frame in flight; so after a violation the session reads and discards until
then.
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Callable, Sequence
from typing import Protocol

from ioreactor.codec.websocket import (
    MAX_CLOSE_REASON,
    MAX_MESSAGE_SIZE,
    BinaryMessage,
    Close,
    CloseCode,
    Event,
    Opcode,
    Ping,
    Pong,
    TextMessage,
    WebSocketDecoder,
    WebSocketEncoder,
    WebSocketError,
)
from ioreactor.codec.websocket_deflate import DeflateConfig, PerMessageDeflate
from ioreactor.codec.websocket_handshake import (
    MAX_HANDSHAKE_SIZE,
    Handshake,
    HandshakeError,
    UpgradeRequest,
    accept,
    error_response,
    parse_request_head,
    validate_upgrade_request,
)
from ioreactor.loop.timing_wheel import PerLoopWheels, TimingWheel, WheelEntry
from ioreactor.net.buffer import Buffer
from ioreactor.net.connection import TcpConnection
from ioreactor.net.handlers import Handler

log = logging.getLogger("ioreactor.websocket")

#: Default seconds without a byte from the peer before a ping is sent.
PING_INTERVAL = 20.0
#: Default seconds a ping waits for any byte from the peer before it is declared dead.
PING_TIMEOUT = 20.0
#: Default seconds to wait for the peer's side of a close (its close frame, or its FIN).
CLOSE_TIMEOUT = 10.0
#: Default seconds a new connection has to complete its opening handshake.
HANDSHAKE_TIMEOUT = 10.0
#: Timing-wheel ticks per shortest timeout (deadlines come at most 1/16 of it late).
TICKS_PER_TIMEOUT = 16


class Transport(Protocol):
    """What a session needs of its connection (TcpConnection's public methods)."""

    def send(self, data: bytes) -> None: ...

    def shutdown(self) -> None: ...

    def close(self) -> None: ...


class SessionState(enum.Enum):
    OPEN = "open"
    CLOSING = "closing"
    CLOSED = "closed"


OPEN = SessionState.OPEN
CLOSING = SessionState.CLOSING
CLOSED = SessionState.CLOSED


class PeerSilentError(TimeoutError):
    """The peer sent nothing during a ping interval and the ping timeout after it."""


class CloseTimeoutError(TimeoutError):
    """The peer did not finish the close handshake within ``close_timeout``."""


def _short_reason(text: str) -> str:
    """``text`` cut to what a close frame carries (123 bytes of UTF-8)."""
    raw = text.encode()
    if len(raw) <= MAX_CLOSE_REASON:
        return text
    return raw[:MAX_CLOSE_REASON].decode(errors="ignore")


class WebSocketSession:
    """One WebSocket connection in the OPEN state or later; see the module docstring.

    ``server``: which end this is (a client masks what it sends and expects unmasked
    frames). ``deflate``: the permessage-deflate state when the handshake agreed on it.
    ``ping_interval`` None disables keep-alive pings. ``clock``: the time base of
    :attr:`deadline` and :meth:`on_timer` (the loop's ``time``, or a test's clock).
    ``on_deadline_moved(session)`` is called when :attr:`deadline` becomes earlier than
    it was (close() or a violation started the close timer).
    """

    __slots__ = (
        "_clock",
        "_close_deadline",
        "_last_seen",
        "_on_deadline_moved",
        "_pinged_at",
        "close_code",
        "close_reason",
        "close_timeout",
        "context",
        "decoder",
        "encoder",
        "error",
        "ping_interval",
        "ping_timeout",
        "sent_close_code",
        "state",
        "subprotocol",
        "transport",
    )

    def __init__(
        self,
        transport: Transport,
        *,
        server: bool = True,
        subprotocol: str | None = None,
        deflate: PerMessageDeflate | None = None,
        max_message_size: int = MAX_MESSAGE_SIZE,
        max_frame_size: int | None = None,
        ping_interval: float | None = PING_INTERVAL,
        ping_timeout: float = PING_TIMEOUT,
        close_timeout: float = CLOSE_TIMEOUT,
        clock: Callable[[], float] = time.monotonic,
        on_deadline_moved: Callable[[WebSocketSession], object] | None = None,
    ) -> None:
        if ping_interval is not None and not ping_interval > 0:
            raise ValueError(f"ping_interval must be > 0 or None, got {ping_interval}")
        if not ping_timeout > 0 or not close_timeout > 0:
            raise ValueError("ping_timeout and close_timeout must be > 0")
        self.transport = transport
        self.subprotocol = subprotocol
        self.decoder = WebSocketDecoder(
            server=server,
            max_frame_size=max_frame_size,
            max_message_size=max_message_size,
            deflate=deflate,
        )
        self.encoder = WebSocketEncoder(server=server, deflate=deflate)
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.close_timeout = close_timeout
        self._clock = clock
        self._on_deadline_moved = on_deadline_moved
        self.state = OPEN
        #: The code and reason of the peer's close frame (1005: it had none); 1006 once
        #: the connection ended without one.
        self.close_code: int | None = None
        self.close_reason = ""
        #: The code of the close frame this end sent, if it sent one.
        self.sent_close_code: int | None = None
        #: Why this end failed the connection (a WebSocketError or a timeout), if it did.
        self.error: BaseException | None = None
        #: Free for the application: per-connection state.
        self.context: object = None
        self._last_seen = clock()
        self._pinged_at = float("-inf")
        self._close_deadline: float | None = None

    def __repr__(self) -> str:
        return f"<WebSocketSession {self.state.value} close_code={self.close_code}>"

    # -- input ----------------------------------------------------------------------------

    def receive(self, buffer: Buffer) -> list[Event]:
        """Decode what ``buffer`` holds: the events, in order. Pings are answered and a
        close frame is echoed here; a violation fails the connection (the events before
        it are still returned). Once closed, input is discarded.

        It never closes the transport (it sends and half-closes at most), so the driver
        delivers every event of the read before the connection can end."""
        events: list[Event] = []
        if self.state is CLOSED:
            buffer.retrieve_all()
            return events
        self._last_seen = self._clock()
        try:
            self.decoder.decode(buffer, events)
        except WebSocketError as exc:
            buffer.retrieve_all()
            self._fail(exc.code, str(exc), exc)
            return events
        for event in events:
            if isinstance(event, Ping):
                if self.state is OPEN:
                    self.transport.send(self.encoder.pong(event.payload))
            elif isinstance(event, Close):
                buffer.retrieve_all()
                self._peer_closed(event)
        return events

    def _peer_closed(self, event: Close) -> None:
        """The close handshake is complete: FIN, then the peer closes its side (or the
        close timer closes the transport)."""
        self.close_code = event.code
        self.close_reason = event.reason
        if self.state is OPEN:
            # Echo the code (and reason) exactly as received; no code: an empty close.
            code = None if event.code == CloseCode.NO_STATUS else event.code
            self.sent_close_code = code
            self.transport.send(self.encoder.close(code, event.reason))
        self.state = CLOSED
        self.transport.shutdown()
        self._start_close_timer()

    def connection_lost(self) -> None:
        """The transport ended (call it from ``on_close``): without a close frame from
        the peer, :attr:`close_code` becomes 1006."""
        self.state = CLOSED
        self._close_deadline = None
        if self.close_code is None:
            self.close_code = CloseCode.ABNORMAL

    # -- output ---------------------------------------------------------------------------

    def send_text(self, data: str) -> bool:
        """Send a text message; False (and nothing sent) once the session is not OPEN."""
        if self.state is not OPEN:
            return False
        self.transport.send(self.encoder.text(data))
        return True

    def send_binary(self, data: bytes | bytearray | memoryview) -> bool:
        """Send a binary message; False (and nothing sent) once the session is not OPEN."""
        if self.state is not OPEN:
            return False
        self.transport.send(self.encoder.binary(data))
        return True

    def send(
        self, data: str | bytes | bytearray | memoryview, *, fragment_size: int | None = None
    ) -> bool:
        """A text (``str``) or binary message, in frames of at most ``fragment_size``
        payload bytes when given; False once the session is not OPEN."""
        if self.state is not OPEN:
            return False
        if isinstance(data, str):
            frames = self.encoder.message(data.encode(), Opcode.TEXT, fragment_size=fragment_size)
        else:
            frames = self.encoder.message(data, Opcode.BINARY, fragment_size=fragment_size)
        self.transport.send(frames)
        return True

    def send_ping(self, payload: bytes = b"") -> bool:
        if self.state is not OPEN:
            return False
        self.transport.send(self.encoder.ping(payload))
        return True

    def send_pong(self, payload: bytes = b"") -> bool:
        """An unsolicited pong (a one-way heartbeat); pings are answered by themselves."""
        if self.state is not OPEN:
            return False
        self.transport.send(self.encoder.pong(payload))
        return True

    def close(self, code: int | None = CloseCode.NORMAL, reason: str = "") -> None:
        """Start the close handshake: send a close frame with ``code`` (None: no code)
        and ``reason``, then wait up to ``close_timeout`` for the peer's. Raises
        ValueError for a code that may not be sent; does nothing unless OPEN."""
        if self.state is not OPEN:
            return
        frame = self.encoder.close(code, reason)
        self.sent_close_code = code
        self.state = CLOSING
        self.transport.send(frame)
        self._start_close_timer()

    def _fail(self, code: int, reason: str, error: BaseException) -> None:
        """Fail the connection (RFC 6455 §7.1.7): a close frame with ``code``, then FIN."""
        self.error = error
        if self.state is OPEN:
            self.sent_close_code = code
            self.transport.send(self.encoder.close(code, _short_reason(reason)))
        self.state = CLOSED
        self.transport.shutdown()
        self._start_close_timer()

    def _start_close_timer(self) -> None:
        self._close_deadline = self._clock() + self.close_timeout
        if self._on_deadline_moved is not None:
            self._on_deadline_moved(self)

    # -- timers ---------------------------------------------------------------------------

    @property
    def deadline(self) -> float | None:
        """When :meth:`on_timer` has something to do next, or None."""
        if self.state is not OPEN:
            return self._close_deadline
        if self.ping_interval is None:
            return None
        if self._pinged_at >= self._last_seen:  # pinged, nothing heard since
            return self._pinged_at + self.ping_timeout
        return self._last_seen + self.ping_interval

    def ping_due(self, now: float) -> bool:
        """Whether the peer has been silent for ``ping_interval`` and not pinged since."""
        return (
            self.state is OPEN
            and self.ping_interval is not None
            and self._pinged_at < self._last_seen
            and now >= self._last_seen + self.ping_interval
        )

    def on_timer(self, now: float) -> None:
        """Do what is due at ``now``: ping a silent peer; fail the connection (1011) when
        nothing came for ``ping_timeout`` after the ping; close the transport when the
        peer has not finished the close within ``close_timeout``."""
        if self.state is OPEN:
            if self.ping_due(now):
                self._pinged_at = now
                self.transport.send(self.encoder.ping())
            elif self._pinged_at >= self._last_seen and now >= self._pinged_at + self.ping_timeout:
                silent = now - self._last_seen
                self._fail(
                    CloseCode.INTERNAL_ERROR,
                    "keepalive ping timeout",
                    PeerSilentError(f"nothing received for {silent:.1f} s, ping unanswered"),
                )
        elif self._close_deadline is not None and now >= self._close_deadline:
            self._close_deadline = None
            if self.state is CLOSING:
                self.error = CloseTimeoutError(
                    f"no close frame from the peer within {self.close_timeout} s"
                )
            self.state = CLOSED
            self.transport.close()


# -- serving WebSocket straight from a TCP server ----------------------------------------


class _Refused:
    """conn.context of a connection whose handshake was refused: its input is dropped."""

    __slots__ = ()


_REFUSED = _Refused()


class WebSocketHandler(Handler):
    """Serves WebSocket on a raw TCP server: the opening handshake, then one
    :class:`WebSocketSession` per connection (in ``conn.context``).

    Override :meth:`on_open`, :meth:`on_text`, :meth:`on_binary`, :meth:`on_ping`,
    :meth:`on_pong` and :meth:`on_disconnect` (or :meth:`on_events` for a whole read's
    events), and :meth:`on_request` to refuse a handshake (say, an unknown path).
    A subclass overriding ``on_connection``, ``on_message``, ``on_close`` or
    ``on_shutdown`` must call ``super()``.

    Every wait a peer can stretch has a limit: ``handshake_timeout`` for the request,
    ``max_handshake_size`` for its head (431), ``ping_interval`` + ``ping_timeout`` of
    silence (1011), ``close_timeout`` for the peer's side of a close, and the frame and
    message limits (1009). One timing-wheel entry per connection drives them all.
    """

    def __init__(
        self,
        *,
        subprotocols: Sequence[str] = (),
        deflate: DeflateConfig | None = None,
        max_message_size: int = MAX_MESSAGE_SIZE,
        max_frame_size: int | None = None,
        max_handshake_size: int = MAX_HANDSHAKE_SIZE,
        handshake_timeout: float = HANDSHAKE_TIMEOUT,
        ping_interval: float | None = PING_INTERVAL,
        ping_timeout: float = PING_TIMEOUT,
        close_timeout: float = CLOSE_TIMEOUT,
        wheel: TimingWheel | None = None,
    ) -> None:
        timeouts = [handshake_timeout, ping_timeout, close_timeout]
        if ping_interval is not None:
            timeouts.append(ping_interval)
        if min(timeouts) <= 0:
            raise ValueError("every timeout must be > 0")
        self.subprotocols = tuple(subprotocols)
        self.deflate = deflate
        self.max_frame_size = max_frame_size
        self.max_message_size = max_message_size
        self.max_handshake_size = max_handshake_size
        self.handshake_timeout = handshake_timeout
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.close_timeout = close_timeout
        self._wheel = wheel
        self._wheels = PerLoopWheels(tick=min(timeouts) / TICKS_PER_TIMEOUT)
        self._entries: dict[object, WheelEntry[TcpConnection]] = {}
        #: Connections whose handshake an HTTP server made (see :meth:`adopt`).
        self._adopted: dict[TcpConnection, tuple[Handshake, object]] = {}
        self._visit = self._on_deadline
        self._moved = self._deadline_moved

    def __len__(self) -> int:
        """Connections open (in the handshake or after it)."""
        return len(self._entries)

    # -- connection lifecycle -------------------------------------------------------------

    def adopt(self, conn: TcpConnection, handshake: Handshake, context: object = None) -> None:
        """``conn``'s opening handshake was made by an HTTP server (an Upgrade request
        answered ``101``), which hands the connection to this handler next: its session
        opens at once then, with what was agreed, and ``session.context = context``.
        :meth:`forget` undoes it for a connection that closed before the hand-over."""
        self._adopted[conn] = (handshake, context)

    def forget(self, conn: TcpConnection) -> None:
        """``conn`` closed before it was handed over: drop what :meth:`adopt` kept."""
        self._adopted.pop(conn, None)

    def on_connection(self, conn: TcpConnection) -> None:
        wheel = self._wheel if self._wheel is not None else self._wheels.for_loop(conn.loop)
        adopted = self._adopted.pop(conn, None)
        if adopted is not None:
            self._entries[conn] = wheel.schedule(conn.loop.time(), self._visit, conn)
            handshake, context = adopted
            self._open(conn, handshake, context)
            return
        when = conn.loop.time() + self.handshake_timeout
        self._entries[conn] = wheel.schedule(when, self._visit, conn)

    def on_message(self, conn: TcpConnection, buffer: Buffer) -> None:
        session = conn.context
        if type(session) is WebSocketSession:
            events = session.receive(buffer)
            if events:
                self._deliver(session, events)
        elif session is _REFUSED:
            buffer.retrieve_all()
        else:
            self._handshake(conn, buffer)

    def on_close(self, conn: TcpConnection) -> None:
        entry = self._entries.pop(conn, None)
        if entry is not None:
            self._wheel_of(conn).cancel(entry)
        session = conn.context
        if type(session) is WebSocketSession:
            session.connection_lost()
            code = session.close_code
            assert code is not None  # connection_lost() sets it
            try:
                self.on_disconnect(session, code, session.close_reason)
            except Exception:
                log.exception("on_disconnect failed for peer %s", conn.peer)

    def on_shutdown(self, conn: TcpConnection) -> None:
        """The server is shutting down: close 1001 (going away), wait for the peer's."""
        session = conn.context
        if type(session) is WebSocketSession and session.state is OPEN:
            session.close(CloseCode.GOING_AWAY)
        else:
            conn.close()

    # -- the opening handshake ------------------------------------------------------------

    def _handshake(self, conn: TcpConnection, buffer: Buffer) -> None:
        end = buffer.find(b"\r\n\r\n")
        if end < 0 and len(buffer) <= self.max_handshake_size:
            return  # the head is not complete yet
        if end < 0 or end + 4 > self.max_handshake_size:
            error = HandshakeError(f"handshake over {self.max_handshake_size} bytes", 431)
            self._refuse(conn, buffer, error)
            return
        head = buffer.read(end + 4)[:end]
        try:
            request_head = parse_request_head(head)
            request = validate_upgrade_request(
                request_head.method, request_head.version, request_head.headers, request_head.target
            )
            self.on_request(conn, request)
            response, agreed = accept(request, subprotocols=self.subprotocols, deflate=self.deflate)
        except HandshakeError as exc:
            self._refuse(conn, buffer, exc)
            return
        conn.send(response)
        session = self._open(conn, agreed)
        if buffer and session.state is OPEN:  # frames sent right behind the request
            events = session.receive(buffer)
            if events:
                self._deliver(session, events)

    def _open(
        self, conn: TcpConnection, agreed: Handshake, context: object = None
    ) -> WebSocketSession:
        """The handshake succeeded (its 101 is on its way): the connection's session."""
        deflate = None
        if agreed.deflate is not None:
            config = self.deflate
            assert config is not None  # agreed only when configured
            deflate = PerMessageDeflate(
                agreed.deflate,
                server=True,
                level=config.compression_level,
                mem_level=config.mem_level,
            )
        session = WebSocketSession(
            conn,
            server=True,
            subprotocol=agreed.subprotocol,
            deflate=deflate,
            max_frame_size=self.max_frame_size,
            max_message_size=self.max_message_size,
            ping_interval=self.ping_interval,
            ping_timeout=self.ping_timeout,
            close_timeout=self.close_timeout,
            clock=conn.loop.time,
            on_deadline_moved=self._moved,
        )
        session.context = context
        conn.context = session
        self._deadline_moved(session)
        self._call("on_open", self.on_open, session)
        return session

    def _refuse(self, conn: TcpConnection, buffer: Buffer, error: HandshakeError) -> None:
        log.info("refusing WebSocket handshake from %s: %s %s", conn.peer, error.status, error)
        conn.error = error
        conn.context = _REFUSED
        buffer.retrieve_all()
        conn.send(error_response(error))
        conn.shutdown()  # the handshake timer closes it if the peer never does

    # -- events ---------------------------------------------------------------------------

    def _deliver(self, session: WebSocketSession, events: list[Event]) -> None:
        try:
            self.on_events(session, events)
        except Exception as exc:
            self._failed_callback(session, exc)

    def _call(
        self, name: str, method: Callable[[WebSocketSession], object], session: WebSocketSession
    ) -> None:
        try:
            method(session)
        except Exception as exc:
            self._failed_callback(session, exc, name)

    def _failed_callback(
        self, session: WebSocketSession, exc: Exception, name: str = "on_events"
    ) -> None:
        """A bug in the application ends its own connection only: close 1011."""
        log.exception("WebSocket handler %s failed; closing with 1011", name)
        session.error = exc
        session.close(CloseCode.INTERNAL_ERROR)

    def on_events(self, session: WebSocketSession, events: list[Event]) -> None:
        """Every event decoded from one read, in order; the default calls the hooks below
        (a close frame is reported once, by :meth:`on_disconnect`)."""
        for event in events:
            if isinstance(event, TextMessage):
                self.on_text(session, event.data)
            elif isinstance(event, BinaryMessage):
                self.on_binary(session, event.data)
            elif isinstance(event, Ping):
                self.on_ping(session, event.payload)
            elif isinstance(event, Pong):
                self.on_pong(session, event.payload)

    def on_request(self, conn: TcpConnection, request: UpgradeRequest) -> None:
        """A valid Upgrade request, before it is accepted: raise :class:`HandshakeError`
        to refuse it (e.g. ``HandshakeError("no such path", 404)``)."""

    def on_open(self, session: WebSocketSession) -> None:
        """The handshake succeeded; the 101 response is on its way."""

    def on_text(self, session: WebSocketSession, data: str) -> None:
        """A text message."""

    def on_binary(self, session: WebSocketSession, data: bytes) -> None:
        """A binary message."""

    def on_ping(self, session: WebSocketSession, payload: bytes) -> None:
        """A ping (already answered)."""

    def on_pong(self, session: WebSocketSession, payload: bytes) -> None:
        """A pong."""

    def on_disconnect(self, session: WebSocketSession, code: int, reason: str) -> None:
        """The connection ended: the peer's close code exactly as sent (1005: none in
        its close frame; 1006: no close frame at all) and reason. ``session.error`` says
        why when this end failed it."""

    # -- the timing wheel -----------------------------------------------------------------

    def _wheel_of(self, conn: TcpConnection) -> TimingWheel:
        return self._wheel if self._wheel is not None else self._wheels.for_loop(conn.loop)

    def _deadline_moved(self, session: WebSocketSession) -> None:
        entry = self._entries.get(session.transport)
        if entry is None:
            return
        deadline = session.deadline
        wheel = self._wheel_of(entry.arg)
        if deadline is None:
            wheel.cancel(entry)
        elif deadline != entry.when or not entry.scheduled:
            wheel.reschedule(entry, deadline)

    def _on_deadline(self, conn: TcpConnection, now: float) -> None:
        session = conn.context
        if type(session) is not WebSocketSession:
            if session is _REFUSED:
                log.info(
                    "closing %s: refused, and still open after %.1f s",
                    conn.peer,
                    self.handshake_timeout,
                )
            else:
                log.info(
                    "closing %s: no handshake within %.1f s", conn.peer, self.handshake_timeout
                )
                conn.error = TimeoutError(f"no handshake within {self.handshake_timeout} s")
            conn.force_close()
            return
        session.on_timer(now)
        if session.error is not None:
            conn.error = session.error
        self._deadline_moved(session)
