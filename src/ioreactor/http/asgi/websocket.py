"""ASGI WebSocket: an Upgrade request run through the application, then the session.

Data flow::

    Upgrade: websocket request (parser stops after it; the bytes behind it are kept)
        --WebSocketCycle.start--> handshake checked (400/405/426 without the app)
        --> Task: app({"type": "websocket", ...}, receive, send)
    receive() <-- websocket.connect, then websocket.receive {text | bytes} per message,
                  websocket.disconnect {code, reason} (the code as the peer sent it)
    send(websocket.accept {subprotocol, headers}) --> the 101 (websocket_handshake.accept)
        --> HttpProtocol.hand_over --> AsgiWebSocketHandler (a WebSocketHandler: the
            codec, permessage-deflate, pings, the close handshake, every limit)
    send(websocket.send / websocket.close) --> the session --> conn.send
    send(websocket.close) or websocket.http.response.* before accept --> an HTTP denial
        (403, or the application's response), and the connection closes

The frames are the codec's (:mod:`ioreactor.codec.websocket`), never parsed twice: one
``WebSocketSession`` per connection, its events delivered to the cycle waiting in
``receive()``. Back-pressure: messages the application has not received yet are held up
to ``MAX_QUEUED_MESSAGES``, then the connection stops reading; ``send()`` waits while
the connection's output is above its high water mark, and raises
:class:`~ioreactor.http.asgi.cycle.ClientDisconnected` once the peer is gone.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import MutableMapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from ioreactor.codec.websocket import (
    MAX_MESSAGE_SIZE,
    BinaryMessage,
    CloseCode,
    Event,
    TextMessage,
)
from ioreactor.codec.websocket_deflate import DeflateConfig
from ioreactor.codec.websocket_handshake import (
    HandshakeError,
    UpgradeRequest,
    accept,
    error_response,
    validate_upgrade_request,
)
from ioreactor.codec.websocket_session import (
    CLOSE_TIMEOUT,
    OPEN,
    PING_INTERVAL,
    PING_TIMEOUT,
    SessionState,
    WebSocketHandler,
    WebSocketSession,
)
from ioreactor.http.asgi.cycle import ClientDisconnected, Waking
from ioreactor.http.asgi.fields import ResponseFields, encode_fields
from ioreactor.http.date import DATE
from ioreactor.http.head import CLOSE_FIELD, encode_head, framing_field, status_line
from ioreactor.http.tasks import start_task

if TYPE_CHECKING:
    from ioreactor.http.asgi.dispatcher import AsgiConnection, AsgiDispatcher
    from ioreactor.http.protocol import HttpProtocol
    from ioreactor.http.request import Request
    from ioreactor.net.buffer import Buffer
    from ioreactor.net.connection import TcpConnection

log = logging.getLogger("ioreactor.asgi")

#: Messages received but not taken by the application yet; past this the connection
#: stops reading until ``receive()`` takes them.
MAX_QUEUED_MESSAGES = 64

# The cycle's progress.
CONNECTING: Final = 0  # the app has not answered the handshake
ACCEPTED: Final = 1  # the 101 is queued; the session opens at the hand-over
DENYING: Final = 2  # an HTTP response instead (websocket.http.response.*)
CLOSED: Final = 3  # over (disconnected, denied or refused)

_FORBIDDEN = (
    b"HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain; charset=utf-8\r\n"
    b"Content-Length: 10\r\nConnection: close\r\n"
)
_INTERNAL_ERROR = (
    b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: text/plain; charset=utf-8\r\n"
    b"Content-Length: 22\r\nConnection: close\r\n"
)


@dataclass(frozen=True)
class WebSocketOptions:
    """The WebSocket limits of an ASGI server (the codec's names and defaults)."""

    max_message_size: int = MAX_MESSAGE_SIZE
    ping_interval: float | None = PING_INTERVAL
    ping_timeout: float = PING_TIMEOUT
    close_timeout: float = CLOSE_TIMEOUT
    #: permessage-deflate offered to clients that ask (None: never).
    deflate: DeflateConfig | None = field(default_factory=DeflateConfig)


class WebSocketCycle(Waking):
    """One WebSocket connection's ASGI side (module docstring)."""

    __slots__ = (
        "connection",
        "denial",
        "disconnect",
        "dispatcher",
        "inbox",
        "outbox",
        "paused",
        "protocol",
        "request",
        "session",
        "state",
        "task",
        "upgrade",
    )

    def __init__(
        self,
        dispatcher: AsgiDispatcher,
        connection: AsgiConnection,
        protocol: HttpProtocol,
        request: Request,
        upgrade: UpgradeRequest,
    ) -> None:
        self.dispatcher = dispatcher
        self.connection = connection
        self.protocol = protocol
        self.request = request
        self.upgrade = upgrade
        self.state = CONNECTING
        self.inbox: collections.deque[dict[str, Any]] = collections.deque(
            ({"type": "websocket.connect"},)
        )
        #: Messages sent between the accept and the hand-over (earlier responses were
        #: still on their way), sent when the session opens.
        self.outbox: list[MutableMapping[str, Any]] | None = None
        self.session: WebSocketSession | None = None
        self.waiter = None
        self.paused = False
        #: The websocket.disconnect message, once the connection ended.
        self.disconnect: dict[str, Any] | None = None
        #: A denial response being built: (status, fields, body pieces).
        self.denial: tuple[int, ResponseFields, list[bytes]] | None = None
        #: The Task running the application for this connection.
        self.task: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"<WebSocketCycle {self.request.target} state={self.state}>"

    @staticmethod
    def wanted(request: Request) -> bool:
        """The request asks for a WebSocket (``Upgrade: websocket``)."""
        for name, value in request.header_pairs():
            if name.lower() == b"upgrade" and b"websocket" in value.lower():
                return True
        return False

    @classmethod
    def start(
        cls,
        dispatcher: AsgiDispatcher,
        connection: AsgiConnection,
        protocol: HttpProtocol,
        request: Request,
    ) -> None:
        """Check the handshake and run the application for it (an invalid one is
        answered here: the application never sees it)."""
        version = (1, 1) if request.version == "1.1" else (1, 0)
        try:
            upgrade = validate_upgrade_request(
                request.method, version, request.header_pairs(), request.target
            )
        except HandshakeError as exc:
            log.info("refusing a WebSocket handshake from %s: %s %s", request.peer, exc.status, exc)
            protocol.queue.emit(error_response(exc))
            protocol.finish()
            return
        cycle = connection.websocket = cls(dispatcher, connection, protocol, request, upgrade)
        client, server = connection.addresses
        scope = dispatcher.scopes.websocket(request, client, server, upgrade.subprotocols)
        cycle.task = start_task(connection.loop, cycle._run(scope))

    async def _run(self, scope: dict[str, Any]) -> None:
        error: BaseException | None = None
        try:
            await self.dispatcher.app(scope, self.receive, self.send)
        except BaseException as exc:  # reported below: a 500, or close 1011
            error = exc
        self._finished(error)
        if isinstance(error, KeyboardInterrupt | SystemExit):
            raise error

    def _finished(self, error: BaseException | None) -> None:
        line = f'"GET {self.request.target} HTTP/{self.request.version}" (WebSocket)'
        if error is not None and not isinstance(error, ClientDisconnected | asyncio.CancelledError):
            log.error(
                "Exception in ASGI application for %s from %s",
                line,
                self.request.peer,
                exc_info=error,
            )
        state = self.state
        if state in (CONNECTING, DENYING):
            if error is None and state == CONNECTING:
                log.error("ASGI application returned without accepting or closing %s", line)
            self._refuse(_INTERNAL_ERROR, b"Internal Server Error\n")
        elif state == ACCEPTED:
            session = self.session
            code = CloseCode.NORMAL if error is None else CloseCode.INTERNAL_ERROR
            if session is not None:
                session.close(code)
            else:
                self.outbox = [*(self.outbox or ()), {"type": "websocket.close", "code": code}]

    # -- the connection's side -------------------------------------------------------------

    def opened(self, session: WebSocketSession) -> None:
        """The hand-over happened: the session runs; send what the app sent meanwhile."""
        self.session = session
        outbox, self.outbox = self.outbox, None
        for message in outbox or ():
            self._send_now(message)

    def received(self, events: list[Event]) -> None:
        inbox = self.inbox
        for event in events:
            if type(event) is TextMessage:
                inbox.append({"type": "websocket.receive", "text": event.data})
            elif type(event) is BinaryMessage:
                inbox.append({"type": "websocket.receive", "bytes": event.data})
        if len(inbox) > MAX_QUEUED_MESSAGES and not self.paused and self.session is not None:
            self.paused = True
            self.session_conn().pause_reading()
        self.wake()

    def ended(self, code: int, reason: str) -> None:
        """The session is over: the application's next receive() gets the disconnect
        (the first report wins: the close handshake's, then the TCP end's)."""
        self.state = CLOSED
        if self.disconnect is None:
            self.disconnect = {"type": "websocket.disconnect", "code": code, "reason": reason}
        self.wake()

    def session_conn(self) -> TcpConnection:
        return self.protocol.conn

    # -- receive --------------------------------------------------------------------------

    async def receive(self) -> dict[str, Any]:
        while True:
            inbox = self.inbox
            if inbox:
                message = inbox.popleft()
                if self.paused and len(inbox) <= MAX_QUEUED_MESSAGES // 2:
                    self.paused = False
                    self.session_conn().resume_reading()
                return message
            if self.disconnect is not None:
                return self.disconnect
            await self._wait()

    # -- send -----------------------------------------------------------------------------

    async def send(self, message: MutableMapping[str, Any]) -> None:
        kind = message["type"]
        state = self.state
        if state == ACCEPTED:
            if kind == "websocket.send" or kind == "websocket.close":
                if self.session is None:
                    self.outbox = [*(self.outbox or ()), message]
                    return
                self._send_now(message)
                conn = self.protocol.conn
                if conn.output_size > conn.high_water_mark:
                    await self._drain()
                return
            raise RuntimeError(f"{kind} after the WebSocket was accepted")
        if state == CONNECTING:
            if kind == "websocket.accept":
                self._accept(message)
                return
            if kind == "websocket.close":
                self._refuse(_FORBIDDEN, b"Forbidden\n")
                return
            if kind == "websocket.http.response.start":
                self._start_denial(message)
                return
            raise RuntimeError(f"{kind} before the WebSocket was accepted")
        if state == DENYING and kind == "websocket.http.response.body":
            assert self.denial is not None
            status, fields, pieces = self.denial
            pieces.append(message.get("body", b""))
            if not message.get("more_body", False):
                self._end_denial(status, fields, b"".join(pieces))
            return
        if state == CLOSED and self.disconnect is not None:
            raise ClientDisconnected(f"the WebSocket {self.request.target} is closed")
        raise RuntimeError(f"{kind} in the wrong place (WebSocket state {state})")

    def _send_now(self, message: MutableMapping[str, Any]) -> None:
        session = self.session
        assert session is not None
        if message["type"] == "websocket.close":
            session.close(message.get("code") or CloseCode.NORMAL, message.get("reason") or "")
            return
        if session.state is not OPEN:
            raise ClientDisconnected(f"the WebSocket {self.request.target} is closing")
        text = message.get("text")
        if text is not None:
            session.send_text(text)
        else:
            data = message.get("bytes")
            if data is None:
                raise RuntimeError("websocket.send needs 'text' or 'bytes'")
            session.send_binary(data)

    async def _drain(self) -> None:
        conn = self.protocol.conn
        while conn.output_size > conn.high_water_mark and not conn.closed:
            await self._wait()
        if self.state == CLOSED and conn.closed:
            raise ClientDisconnected(f"the WebSocket {self.request.target} is closed")

    def _accept(self, message: MutableMapping[str, Any]) -> None:
        subprotocol = message.get("subprotocol")
        extra = [
            (name.decode("latin-1"), value.decode("latin-1"))
            for name, value in message.get("headers", ())
        ]
        handler = self.dispatcher.websockets
        head, agreed = accept(
            self.upgrade,
            subprotocols=(subprotocol,) if subprotocol else (),
            deflate=handler.deflate,
            extra_headers=extra,
        )
        self.state = ACCEPTED
        conn = self.protocol.conn
        handler.adopt(conn, agreed, self)
        self.protocol.hand_over(self.request, head, handler)

    def _start_denial(self, message: MutableMapping[str, Any]) -> None:
        """websocket.http.response.start: the head of the application's own refusal."""
        status = message["status"]
        fields = encode_fields(message.get("headers", ()))
        self.state = DENYING
        status_line(status)  # (ValueError for one out of range)
        self.denial = (status, fields, [])

    def _end_denial(self, status: int, fields: ResponseFields, body: bytes) -> None:
        """The application's denial is complete: its head, framed by its own
        Content-Length or the body's, then the body."""
        head = encode_head(
            status_line(status),
            b"" if fields.has_server else self.protocol.cache.server,
            b"" if fields.has_date else DATE.line,
            fields.lines,
            framing_field(status, len(body) if fields.length < 0 else -1, False),
            CLOSE_FIELD,
        )
        self._deny(head + body)

    def _refuse(self, head: bytes, body: bytes) -> None:
        """Answer with one of this module's responses (``head`` without Server, Date and
        the blank line)."""
        self._deny(head + self.protocol.cache.server + DATE.line + b"\r\n" + body)

    def _deny(self, data: bytes) -> None:
        """Answer the handshake with the HTTP response ``data`` and close."""
        self.state = CLOSED
        self.disconnect = {
            "type": "websocket.disconnect",
            "code": CloseCode.ABNORMAL,
            "reason": "",
        }
        self.protocol.queue.emit(data)
        self.protocol.finish()
        self.wake()


class AsgiWebSocketHandler(WebSocketHandler):
    """The handler an ASGI server's WebSocket connections are handed to: one session
    each (the codec's), whose events go to the connection's :class:`WebSocketCycle`."""

    def __init__(self, options: WebSocketOptions) -> None:
        super().__init__(
            deflate=options.deflate,
            max_message_size=options.max_message_size,
            ping_interval=options.ping_interval,
            ping_timeout=options.ping_timeout,
            close_timeout=options.close_timeout,
        )

    def on_open(self, session: WebSocketSession) -> None:
        cycle = session.context
        assert isinstance(cycle, WebSocketCycle)
        cycle.opened(session)

    def on_events(self, session: WebSocketSession, events: list[Event]) -> None:
        cycle = session.context
        assert isinstance(cycle, WebSocketCycle)
        cycle.received(events)

    def on_message(self, conn: TcpConnection, buffer: Buffer) -> None:
        super().on_message(conn, buffer)
        session = conn.context
        if type(session) is WebSocketSession and session.state is SessionState.CLOSED:
            # The close frames crossed, or this end failed the connection: the
            # application hears it now, not when the peer's FIN comes (close_timeout
            # later at worst). The code: the peer's, else the one this end sent.
            cycle = session.context
            if isinstance(cycle, WebSocketCycle) and cycle.disconnect is None:
                code = session.close_code
                if code is None:
                    code = session.sent_close_code or CloseCode.ABNORMAL
                cycle.ended(code, session.close_reason)

    def on_write_complete(self, conn: TcpConnection) -> None:
        session = conn.context
        if type(session) is WebSocketSession:
            cycle = session.context
            if isinstance(cycle, WebSocketCycle) and cycle.waiter is not None:
                cycle.wake()

    def on_disconnect(self, session: WebSocketSession, code: int, reason: str) -> None:
        cycle = session.context
        if isinstance(cycle, WebSocketCycle):
            cycle.ended(code, reason)
