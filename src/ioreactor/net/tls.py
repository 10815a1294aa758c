"""TLS in the connection: an ``SSLObject`` between two ``MemoryBIO``\\ s, no thread, no
blocking socket, every protocol above unchanged.

Data flow::

    kernel -> recv_into(loop.scratch) -> incoming BIO -> SSLObject.read(into loop.scratch)
           -> plaintext -> on_read / on_message (as without TLS)
    conn.send(plaintext) -> pending -> (flush) SSLObject.write -> outgoing BIO
           -> output chunks (ciphertext) -> one send() per iteration -> kernel

A :class:`TlsConnection` is a :class:`~ioreactor.net.connection.TcpConnection` whose
read step decrypts and whose flush encrypts; the io_uring twin
(:class:`~ioreactor.net.uring.tls.UringTlsConnection`) shares every line of it through
:class:`TlsStream`. A connection without TLS runs exactly the code it ran before: the
TLS state lives in its own :class:`TlsSession`, held only by TLS connections.

Handshake: the handler sees nothing until the handshake completes -- then
``on_connection``, with the peer's certificate, the ALPN protocol and the session on
``conn.tls``. A handshake that takes longer than the layer's ``handshake_timeout``
(:data:`HANDSHAKE_TIMEOUT`) is abandoned: a ClientHello trickled a byte a second holds
a connection no longer than that. Renegotiation is refused (``OP_NO_RENEGOTIATION``).

Writes are coalesced as without TLS: what a handler sends while handling one read is
encrypted together (one record for small replies) when the read completes, and leaves
with the rest of the iteration's output in one ``send``. The water marks count
ciphertext: plaintext is encrypted into the output queue before it could cross the high
mark. ``SSLWantReadError`` on a write (a write that needs a read) keeps the plaintext
until the next read; a read that produces output (a KeyUpdate, a ticket, an alert) has
it sent. (``SSLWantWriteError`` cannot occur: a memory BIO takes everything.)

Closing: ``close()`` and ``shutdown()`` send ``close_notify`` after the queued output; a
peer's ``close_notify`` is the end of its input (``on_eof``). A FIN without it is
accepted as the end of input (logged at DEBUG and counted: many clients just close),
unless it cuts a record in half (a truncated record: logged and counted, the connection
closed with the error). ``force_close()`` sends nothing.

Bad input closes only that connection, with one log line (INFO for what a peer did,
WARNING when a server we connected to fails verification) and a counter in
:class:`TlsStats`: bytes that are not a TLS record (``not_tls``; a plaintext HTTP request
counts as ``plaintext_http`` and may get the layer's ``plaintext_reply``, nginx's 400),
a failed handshake (``handshake_failures``, and ``peer_rejected`` when it was the peer's
certificate), a handshake timeout, a truncated record, a record that fails to decrypt
(``protocol_errors``).
"""

from __future__ import annotations

import logging
import ssl
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ioreactor.loop.poller import READ
from ioreactor.net.connection import CONNECTED, DISCONNECTED, TcpConnection
from ioreactor.net.counters import Counters
from ioreactor.net.handlers import Handler

if TYPE_CHECKING:
    import socket

    from ioreactor.loop.event_loop import EventLoop
    from ioreactor.loop.timers import TimerHandle
    from ioreactor.net.handlers import ConnectionOwner

log = logging.getLogger("ioreactor.tls")

_get_ident = threading.get_ident

#: Default seconds a TLS handshake may take before the connection is closed (nginx's
#: ``ssl_handshake_timeout`` is 60 s, asyncio's too: long enough for a trickled
#: ClientHello to hold a connection for a minute).
HANDSHAKE_TIMEOUT = 10.0

#: The first byte of every TLS record that can open a connection (a handshake record).
_HANDSHAKE_RECORD = 0x16

# TlsSession.state
AWAIT_HELLO = 0  # a server that has not received a byte yet
HANDSHAKING = 1
OPEN = 2
FAILED = 3  # not TLS, a failed or expired handshake, a broken record: closing

_STATE_NAMES = {AWAIT_HELLO: "awaiting hello", HANDSHAKING: "handshaking", OPEN: "open"}
_STATE_NAMES[FAILED] = "failed"


class TlsStats(Counters):
    """What the TLS layer of one server or client saw: handshakes and every kind of bad
    input, one counter each (summed across the server's loops)."""

    __slots__ = (
        "handshake_failures",
        "handshake_timeouts",
        "handshakes",
        "no_close_notify",
        "not_tls",
        "peer_rejected",
        "plaintext_http",
        "protocol_errors",
        "resumed",
        "truncated",
    )

    #: Completed handshakes, and how many of them resumed a session.
    handshakes: int
    resumed: int
    #: Handshakes that failed (any reason, including ``peer_rejected``).
    handshake_failures: int
    #: ... because the peer's certificate did not verify (wrong CA, expired, wrong host).
    peer_rejected: int
    #: Handshakes abandoned at the layer's ``handshake_timeout``.
    handshake_timeouts: int
    #: Connections whose first bytes were not a TLS handshake record...
    not_tls: int
    #: ... or were plaintext HTTP (a request line).
    plaintext_http: int
    #: Records that failed to decrypt or verify after the handshake.
    protocol_errors: int
    #: A FIN in the middle of a record.
    truncated: int
    #: A FIN after whole records but without ``close_notify`` (accepted as the end).
    no_close_notify: int


class TlsLayer:
    """How one server (or client) speaks TLS: its context, its side, the handshake
    timeout, what a plaintext HTTP request gets, and its :class:`TlsStats`.

    The context gets ``OP_NO_RENEGOTIATION``. ``plaintext_reply`` (servers): bytes sent
    in plaintext, before closing, to a peer whose first bytes look like an HTTP request
    (an HTTPS server sends nginx's 400); None closes without a word.
    """

    __slots__ = ("context", "handshake_timeout", "plaintext_reply", "server_side", "stats")

    def __init__(
        self,
        context: ssl.SSLContext,
        *,
        server_side: bool,
        handshake_timeout: float | None = HANDSHAKE_TIMEOUT,
        plaintext_reply: bytes | None = None,
    ) -> None:
        if not isinstance(context, ssl.SSLContext):
            raise TypeError(f"ssl must be an ssl.SSLContext, not {type(context).__name__}")
        if server_side and context.protocol == ssl.PROTOCOL_TLS_CLIENT:
            raise ValueError("a server needs a server context (ssl.PROTOCOL_TLS_SERVER)")
        if not server_side and context.protocol == ssl.PROTOCOL_TLS_SERVER:
            raise ValueError("a client needs a client context (ssl.PROTOCOL_TLS_CLIENT)")
        if handshake_timeout is not None and not handshake_timeout > 0:
            raise ValueError(f"handshake_timeout must be > 0 seconds, got {handshake_timeout}")
        context.options |= ssl.OP_NO_RENEGOTIATION
        self.context = context
        self.server_side = server_side
        self.handshake_timeout = handshake_timeout
        self.plaintext_reply = plaintext_reply
        self.stats = TlsStats()

    def __repr__(self) -> str:
        side = "server" if self.server_side else "client"
        return f"<TlsLayer {side} timeout={self.handshake_timeout} {self.stats!r}>"


class TlsSession:
    """The TLS state of one connection: its ``SSLObject``, the two BIOs, the plaintext
    waiting for the flush. Read ``conn.tls`` for what the handshake settled.

    (Its fields are the connection's working state: :class:`TlsStream` drives them.)
    """

    __slots__ = (
        "handler",
        "incoming",
        "layer",
        "outgoing",
        "pending",
        "pending_size",
        "received_close",
        "record_header",
        "record_left",
        "sent_close",
        "sslobj",
        "state",
        "timer",
    )

    def __init__(
        self,
        layer: TlsLayer,
        handler: Handler,
        server_hostname: str | None = None,
        session: ssl.SSLSession | None = None,
    ) -> None:
        self.layer = layer
        self.incoming = ssl.MemoryBIO()
        self.outgoing = ssl.MemoryBIO()
        #: The SSL object (None once the connection closed: see :meth:`release`).
        self.sslobj: ssl.SSLObject | None = layer.context.wrap_bio(
            self.incoming,
            self.outgoing,
            server_side=layer.server_side,
            server_hostname=server_hostname,
            session=session,
        )
        self.state = AWAIT_HELLO if layer.server_side else HANDSHAKING
        #: The connection's handler: it takes over once the handshake completes.
        self.handler = handler
        #: Plaintext sent and not yet encrypted (until the flush, or the handshake's end).
        self.pending: list[bytes] = []
        self.pending_size = 0
        self.timer: TimerHandle | None = None
        self.sent_close = False
        self.received_close = False
        #: Where the peer's ciphertext stands in its record framing: bytes left of the
        #: current record, and the start of a header split across reads (see
        #: :func:`_follow_records`): a FIN between records is an end, inside one a cut.
        self.record_left = 0
        self.record_header = b""

    def __repr__(self) -> str:
        return f"<TlsSession {_STATE_NAMES[self.state]} {self.version or ''}>"

    def release(self) -> None:
        """Drop the SSL object (the connection closed): OpenSSL frees its state now."""
        self.sslobj = None

    # -- what the handshake settled (None before it completes, and once closed) ------------

    @property
    def established(self) -> bool:
        """The handshake completed (it stays True once closing)."""
        return self.state == OPEN

    @property
    def version(self) -> str | None:
        """``TLSv1.3``, ``TLSv1.2``."""
        return None if self.sslobj is None else self.sslobj.version()

    @property
    def cipher(self) -> tuple[str, str, int] | None:
        """(name, protocol, secret bits) of the negotiated cipher."""
        return None if self.sslobj is None else self.sslobj.cipher()

    @property
    def alpn_protocol(self) -> str | None:
        """The protocol ALPN chose (``http/1.1``), or None."""
        return None if self.sslobj is None else self.sslobj.selected_alpn_protocol()

    @property
    def server_hostname(self) -> str | None:
        """The name a client asked for (SNI and certificate check); None on a server."""
        return None if self.sslobj is None else self.sslobj.server_hostname

    @property
    def session(self) -> ssl.SSLSession | None:
        """The session, to resume it on a later connection (a client's ``session=``)."""
        return None if self.sslobj is None else self.sslobj.session

    @property
    def session_reused(self) -> bool:
        """The handshake resumed an earlier session (a ticket) instead of a full one."""
        return self.sslobj is not None and self.sslobj.session_reused

    def peer_certificate(self) -> dict[str, Any] | None:
        """The peer's verified certificate, decoded (None when it sent none, or when it
        was not verified: ``CERT_NONE``). Under mutual TLS, the client's."""
        if self.state != OPEN or self.sslobj is None:
            return None
        return self.sslobj.getpeercert()

    def peer_certificate_der(self) -> bytes | None:
        """The peer's certificate as DER bytes, verified or not (None if it sent none)."""
        if self.state != OPEN or self.sslobj is None:
            return None
        return self.sslobj.getpeercert(binary_form=True)

    def ssl_object(self) -> ssl.SSLObject:
        """The SSL object of an open connection (the TLS steps' own accessor)."""
        sslobj = self.sslobj
        if sslobj is None:
            raise RuntimeError("the TLS session was released: its connection closed")
        return sslobj


#: The handler of a connection while its handshake runs: nothing reaches the real one
#: (no on_write_complete for handshake bytes, no on_close for a connection it never saw).
_HANDSHAKE_HANDLER = Handler()


class TlsStream(TcpConnection):
    """The TLS steps of a connection, over either I/O path (see the module docstring).

    No slots of its own: the concrete classes hold the :class:`TlsSession` in ``_tls``,
    so :class:`TlsConnection` and the io_uring twin can both inherit this.
    """

    __slots__ = ()
    _tls: TlsSession

    def __init__(
        self,
        loop: EventLoop,
        sock: socket.socket,
        peer: Any,
        handler: Handler,
        owner: ConnectionOwner | None = None,
        *,
        tls: TlsLayer,
        server_hostname: str | None = None,
        session: ssl.SSLSession | None = None,
        **water_marks: int,
    ) -> None:
        """The arguments of :class:`TcpConnection`, and the layer's TLS settings;
        ``server_hostname`` and ``session`` (to resume) for a client."""
        # (the slot is declared by the concrete classes: see the class docstring)
        self._tls = TlsSession(tls, handler, server_hostname, session)  # type: ignore[misc]
        super().__init__(loop, sock, peer, handler, owner, **water_marks)

    @property
    def tls(self) -> TlsSession:
        """The TLS state: version, cipher, ALPN protocol, peer certificate, session."""
        return self._tls

    @property
    def handler(self) -> Handler:
        return self._tls.handler

    def __repr__(self) -> str:
        return super().__repr__()[:-1] + f" tls {_STATE_NAMES[self._tls.state]}>"

    def _set_handler_in_loop(self, handler: Handler) -> None:
        """Until the handshake completes, the handler waits in the session."""
        tls = self._tls
        tls.handler = handler
        super()._set_handler_in_loop(handler if tls.state == OPEN else _HANDSHAKE_HANDLER)

    # -- the handshake --------------------------------------------------------------------

    def _announce(self) -> None:
        """Registered: start the handshake timer; a client sends its ClientHello. The
        handler's ``on_connection`` waits for the handshake (:meth:`_established`)."""
        tls = self._tls
        timeout = tls.layer.handshake_timeout
        if timeout is not None:
            tls.timer = self.loop.call_later(timeout, self._handshake_expired)
        if not tls.layer.server_side and self._handshake():
            self._flush()

    def _handshake(self) -> bool:
        """One step of the handshake; False once it failed (the connection is closing)."""
        tls = self._tls
        try:
            tls.ssl_object().do_handshake()
        except ssl.SSLWantReadError:
            self._take_tls_output()
            return True
        except ssl.SSLError as exc:
            self._handshake_failed(exc)
            return False
        self._established()
        return self._state == CONNECTED

    def _established(self) -> None:
        tls = self._tls
        tls.state = OPEN
        if tls.timer is not None:
            tls.timer.cancel()
            tls.timer = None
        stats = tls.layer.stats
        stats.handshakes += 1
        if tls.session_reused:
            stats.resumed += 1
        self._take_tls_output()  # the server's last flight (and tickets), a client's Finished
        super()._set_handler_in_loop(tls.handler)
        super()._announce()
        if self._state == CONNECTED:
            self._decrypt()  # application data that came with the last flight

    def _handshake_failed(self, exc: ssl.SSLError) -> None:
        tls = self._tls
        stats = tls.layer.stats
        stats.handshake_failures += 1
        if isinstance(exc, ssl.SSLCertVerificationError) or _peer_cert_refused(exc):
            stats.peer_rejected += 1
        if tls.layer.server_side:
            log.info("%r: TLS handshake failed: %s; closing", self, _reason(exc))
        else:
            log.warning("%r: TLS handshake with the server failed: %s", self, _reason(exc))
        self._fail(exc)

    def _handshake_expired(self) -> None:
        tls = self._tls
        tls.timer = None
        if tls.state in (AWAIT_HELLO, HANDSHAKING) and self._state != DISCONNECTED:
            tls.layer.stats.handshake_timeouts += 1
            timeout = tls.layer.handshake_timeout
            log.info("%r: no TLS handshake within %g s; closing", self, timeout)
            tls.state = FAILED
            self.error = TimeoutError(f"TLS handshake not completed within {timeout} s")
            self._close_now()

    def _not_tls(self, data: memoryview) -> None:
        """A server's first bytes are not a TLS handshake record: answer a plaintext HTTP
        request with the layer's ``plaintext_reply`` (if any), then close."""
        layer = self._tls.layer
        first = data[0]
        if 0x41 <= first <= 0x5A:  # A..Z: a request line (GET, POST, ...)
            layer.stats.plaintext_http += 1
            answer = "answered in plaintext" if layer.plaintext_reply else "closing"
            log.info("%r: plaintext HTTP on the TLS port; %s", self, answer)
            reply = layer.plaintext_reply
        else:
            layer.stats.not_tls += 1
            log.info("%r: not TLS (first byte 0x%02x); closing", self, first)
            reply = None
        if reply:
            super()._send_in_loop(reply)  # plaintext, past the TLS layer
        self._fail(ConnectionRefusedError(f"not a TLS ClientHello (first byte 0x{first:02x})"))

    def _fail(self, exc: BaseException) -> None:
        """Give up on TLS: send the alert OpenSSL wrote (if any), then close."""
        tls = self._tls
        tls.state = FAILED
        if tls.timer is not None:
            tls.timer.cancel()
            tls.timer = None
        tls.pending.clear()
        tls.pending_size = 0
        self.error = exc.with_traceback(None)  # (see TcpConnection._handle_error)
        self._take_tls_output()
        self._close_in_loop()

    # -- reading --------------------------------------------------------------------------

    def _received(self, data: memoryview) -> bool:
        """The read step: ciphertext in, plaintext to the handler, its replies out."""
        tls = self._tls
        if tls.state == OPEN:
            if tls.received_close:
                return False  # input after close_notify (an io_uring read in flight)
            _follow_records(tls, data)
            tls.incoming.write(data)
            return self._decrypt()
        if tls.state == FAILED:
            return False
        if tls.state == AWAIT_HELLO:
            if data[0] != _HANDSHAKE_RECORD:
                self._not_tls(data)
                return False
            tls.state = HANDSHAKING
        _follow_records(tls, data)
        tls.incoming.write(data)
        if self._handshake():
            self._flush()
            return True
        return False

    def _decrypt(self) -> bool:
        """Hand the plaintext the incoming BIO holds to the handler, one delivery per
        ``scratch`` size, while it reads; then send what it (and TLS) wrote. False when
        the connection failed or closed.

        Plaintext is decrypted into the loop's scratch buffer (its ciphertext is in the
        BIO by now), so ``on_read`` gets it in place as without TLS. The next record is
        read only while the BIO holds one: no ``SSLWantReadError`` per read.
        """
        tls = self._tls
        # The C object under the SSLObject: its read(n, buffer) returns a count, and
        # calling it directly skips ssl.py's forwarding frame (one per record).
        cobj = tls.sslobj._sslobj  # type: ignore[union-attr]
        read: Callable[[int, memoryview], int] = cobj.read
        unread: Callable[[], int] = cobj.pending
        incoming = tls.incoming
        scratch = self.loop.scratch_view
        size = len(scratch)
        ok = True
        while True:
            n = 0
            more = False
            try:
                while True:
                    got = read(size - n, scratch[n:] if n else scratch)
                    if not got:
                        tls.received_close = True
                        break
                    n += got
                    if n == size:
                        more = True
                        break
                    if not incoming.pending and not unread():
                        break
            except ssl.SSLWantReadError:
                pass
            except ssl.SSLZeroReturnError:  # (read() returns 0 only before our own)
                tls.received_close = True
            except ssl.SSLError as exc:
                if n:
                    TcpConnection._received(self, scratch[:n])
                self._broken_record(exc)
                return False
            # (the base class's read step: UringConnection has no read step of its own)
            if n and not TcpConnection._received(self, scratch[:n]):
                return False
            if not more or self._state != CONNECTED or not self._events & READ:
                break  # dry, closing, or paused (the rest stays in the SSLObject)
        if tls.received_close and self._state == CONNECTED:
            ok = False
            super()._handle_eof()  # close_notify: the end of the peer's input
        if tls.outgoing.pending:
            self._take_tls_output()  # a read that produced output (KeyUpdate, alert)
        if (tls.pending or self._out) and self._state != DISCONNECTED:
            self._flush()
        return ok and self._state == CONNECTED

    def _keep_ciphertext(self, data: memoryview) -> None:
        """Bytes read while reading is paused wait in the incoming BIO (io_uring)."""
        tls = self._tls
        _follow_records(tls, data)
        tls.incoming.write(data)

    def _broken_record(self, exc: ssl.SSLError) -> None:
        self._tls.layer.stats.protocol_errors += 1
        log.info("%r: TLS error: %s; closing", self, _reason(exc))
        self._fail(exc)

    def _update_reading(self) -> None:
        """Reading resumed with plaintext (or whole records) already decrypted-side: the
        fd will not report it, so deliver it from the loop."""
        super()._update_reading()
        tls = self._tls
        if (
            self._state == CONNECTED
            and self._events & READ
            and tls.state == OPEN
            and not self._in_read
            and (tls.incoming.pending or tls.ssl_object().pending())
        ):
            self.loop.call_soon(self._resume_decrypt)

    def _resume_decrypt(self) -> None:
        if self._state == CONNECTED and self._events & READ and self._tls.state == OPEN:
            self.last_read = self.loop.now
            self._decrypt()

    def _handle_eof(self) -> None:
        """TCP FIN. After ``close_notify`` it was handled already; in mid-record it
        truncates (an error); after whole records it is accepted as the end of input."""
        tls = self._tls
        if tls.state == OPEN:
            if tls.received_close:
                return
            if tls.record_left or tls.record_header:
                tls.layer.stats.truncated += 1
                log.info("%r: FIN in the middle of a TLS record; closing", self)
                self.error = ssl.SSLEOFError("TLS record truncated by the peer's FIN")
                self._peer_eof = True
                self._close_now()
                return
            tls.layer.stats.no_close_notify += 1
            log.debug("%r: FIN without close_notify", self)
        elif tls.state != FAILED:
            if tls.state == HANDSHAKING:
                tls.layer.stats.handshake_failures += 1
                log.info("%r: peer closed during the TLS handshake", self)
            else:
                log.debug("%r: peer closed before any TLS byte", self)
            tls.state = FAILED
            self.error = ConnectionAbortedError("peer closed before the TLS handshake completed")
            self._peer_eof = True
            self._close_now()
            return
        super()._handle_eof()

    # -- writing --------------------------------------------------------------------------

    def send(self, data: bytes | bytearray | memoryview) -> None:
        """Queue plaintext; it is encrypted and leaves at the end of this loop iteration
        (or when the handshake completes). Any thread."""
        loop = self.loop
        if loop._thread_id != _get_ident():
            loop.call_soon_threadsafe(self._send_in_loop, bytes(data))
        elif (
            self._state == CONNECTED
            and type(data) is bytes
            and data
            and not self._shutdown_requested
        ):
            # Fast path, the common case (the rest of _send_in_loop, inlined).
            tls = self._tls
            tls.pending.append(data)
            size = tls.pending_size = tls.pending_size + len(data)
            if not self._flush_queued and not self._in_read:
                self._flush_queued = True
                loop.pending_flush.append(self)
            if size + self._out_size >= self._high_water and not self._above_high:
                self._over_high_water()
        else:
            self._send_in_loop(data)

    def _send_in_loop(self, data: bytes | bytearray | memoryview) -> None:
        tls = self._tls
        n = len(data)
        if self._state != CONNECTED or self._shutdown_requested or tls.sent_close:
            if n:
                log.debug("%r: dropping %d bytes sent after close/shutdown", self, n)
            return
        if not n:
            return
        tls.pending.append(data if type(data) is bytes else bytes(data))
        tls.pending_size += n
        if not self._flush_queued and not self._in_read:
            # Even while the kernel's buffer is full: the flush encrypts it behind.
            self._flush_queued = True
            self.loop.pending_flush.append(self)
        if tls.pending_size + self._out_size >= self._high_water and not self._above_high:
            self._over_high_water()

    def _over_high_water(self) -> None:
        """Plaintext and ciphertext queued reach the high water mark: encrypt now, so the
        marks judge ciphertext, and pause reading."""
        if self._tls.state == OPEN:
            self._encrypt()
        self._crossed_high_water()

    def _flush(self) -> None:
        """Encrypt what the handler sent (one write for all of it), then the I/O path's
        flush (:meth:`_flush_ciphertext`) sends the ciphertext."""
        tls = self._tls
        if tls.pending and tls.state == OPEN:
            self._encrypt()
        self._flush_ciphertext()

    def _flush_ciphertext(self) -> None:
        """The I/O path's flush (the concrete classes name it: cheaper than super())."""
        raise NotImplementedError

    def _encrypt(self) -> None:
        tls = self._tls
        pending = tls.pending
        data = pending[0] if len(pending) == 1 else b"".join(pending)
        pending.clear()
        tls.pending_size = 0
        try:
            written = tls.sslobj._sslobj.write(data)  # type: ignore[union-attr]
        except ssl.SSLWantReadError:
            written = 0  # a write that needs a read: kept for the flush after the next read
        except ssl.SSLError as exc:
            self._broken_record(exc)
            return
        if written < len(data):
            pending.append(data[written:])
            tls.pending_size = len(data) - written
        out = tls.outgoing.read()
        if out:
            self._out.append(out)
            self._out_size += len(out)

    def _take_tls_output(self) -> None:
        """Queue what OpenSSL wrote by itself (handshake, alert, close_notify) for the flush."""
        outgoing = self._tls.outgoing
        if not outgoing.pending or self._state == DISCONNECTED:
            return
        out = outgoing.read()
        self._out.append(out)
        self._out_size += len(out)
        if not self._flush_queued and not self._in_read:
            self._flush_queued = True
            self.loop.pending_flush.append(self)

    def _drained(self) -> None:
        if self._tls.pending and self._tls.state == OPEN:
            return  # plaintext waits for this iteration's flush, which drains again
        super()._drained()

    # -- closing --------------------------------------------------------------------------

    def _say_close_notify(self) -> None:
        """After the queued plaintext: ``close_notify`` (once, on an open session)."""
        tls = self._tls
        if tls.state != OPEN or tls.sent_close:
            return
        if tls.pending:
            self._encrypt()
        tls.sent_close = True
        try:
            tls.ssl_object().unwrap()
        except ssl.SSLError:
            pass  # SSLWantReadError: the peer's close_notify is not awaited
        self._take_tls_output()

    def _shutdown_in_loop(self) -> None:
        """Half-close: ``close_notify`` after the queued output, then the FIN; reading
        goes on until the peer's ``close_notify`` (or FIN)."""
        if self._state == CONNECTED and not self._shutdown_requested:
            self._say_close_notify()
        super()._shutdown_in_loop()

    def _close_in_loop(self) -> None:
        if self._state == CONNECTED:
            self._say_close_notify()
        super()._close_in_loop()

    def _close_now(self) -> None:
        """Close; then free OpenSSL's state of the connection at once (tens of KB a
        handshake): a handler object that references the connection (``conn.context``)
        must not keep it until the cyclic GC runs, which counts Python objects only."""
        if self._state == DISCONNECTED:
            return
        tls = self._tls
        if tls.timer is not None:
            tls.timer.cancel()
            tls.timer = None
        tls.pending.clear()
        tls.pending_size = 0
        super()._close_now()  # on_close and the owner may still read conn.tls
        tls.release()


class TlsConnection(TlsStream):
    """A TLS connection on a readiness loop (select, poll, epoll, epoll-et)."""

    __slots__ = ("_tls",)
    _flush_ciphertext = TcpConnection._flush


def _follow_records(tls: TlsSession, data: memoryview) -> None:
    """Advance ``tls``'s place in the record framing by ``data`` (each record: a 5-byte
    header -- type, version, 2-byte length -- then that many bytes). One comparison for
    a read inside a long record, a step per record otherwise."""
    n = len(data)
    pos = tls.record_left
    if pos >= n:
        tls.record_left = pos - n
        return
    part = tls.record_header
    if part:  # the previous read ended inside a header (record_left is 0)
        need = 5 - len(part)
        if n < need:
            tls.record_header = part + bytes(data)
            return
        head = part + bytes(data[:need])
        pos = need + ((head[3] << 8) | head[4])
        tls.record_header = b""
    while pos + 5 <= n:
        pos += 5 + ((data[pos + 3] << 8) | data[pos + 4])
    if pos >= n:
        tls.record_left = pos - n
    else:
        tls.record_header = bytes(data[pos:])
        tls.record_left = 0


def _reason(exc: BaseException) -> str:
    """An SSL error in a few words: OpenSSL's reason and the verification message."""
    if isinstance(exc, ssl.SSLCertVerificationError) and exc.verify_message:
        return f"certificate verify failed: {exc.verify_message}"
    reason = getattr(exc, "reason", None)
    if reason:
        return str(reason).replace("_", " ").lower()
    return str(exc) or type(exc).__name__


#: OpenSSL reasons that mean the peer's certificate was refused (or missing when required).
_PEER_CERT_REASONS = frozenset(
    {"CERTIFICATE_VERIFY_FAILED", "PEER_DID_NOT_RETURN_A_CERTIFICATE", "NO_CERTIFICATE_RETURNED"}
)


def _peer_cert_refused(exc: ssl.SSLError) -> bool:
    return getattr(exc, "reason", None) in _PEER_CERT_REASONS
