"""asyncio's stream transport on an ioreactor :class:`TcpConnection` (TCP and Unix).

Data flow::

    kernel -> recv_into(loop.scratch) -> ProtocolHandler.on_read(conn, view)
           -> protocol.data_received(bytes)        (Protocol: the one copy asyncio needs)
           or get_buffer() <- copy <- view; buffer_updated(n)   (BufferedProtocol)
    transport.write(data) -> conn.send(data) -> one send per read / loop iteration

One :class:`ProtocolHandler` serves every connection of a loop (the connection's
``context`` is its transport); the transport caches its protocol's bound methods, so
a read costs the handler call and the protocol call, no Handle, no closure.

Back-pressure, asyncio's way: the connection itself never pauses reading for output
(its high water mark is off); the transport calls ``protocol.pause_writing()`` when
queued output passes ``high`` and ``resume_writing()`` once the connection reports it
drained. ``pause_reading()``/``resume_reading()`` switch the connection's read interest.
``write_eof()`` is the connection's half-close after the output drains; ``close()`` its
graceful close, ``abort()`` its forced one. ``connection_lost`` is called soon after the
connection closes, never from inside ``close()``.
"""

from __future__ import annotations

import socket
import warnings
from asyncio import BufferedProtocol, constants, transports, trsock
from typing import TYPE_CHECKING, Any

from ioreactor.net.buffer import Buffer
from ioreactor.net.connection import TcpConnection
from ioreactor.net.handlers import Handler

if TYPE_CHECKING:
    from ioreactor.aio.core import LoopCore

#: Repeated writes after the connection was lost are logged once this many have been made.
LOG_THRESHOLD_FOR_CONNLOST_WRITES = 5


class FlowControl(transports._FlowControlMixin):
    """asyncio's write flow control, the base of every transport here that writes:
    ``pause_writing()`` once ``get_write_buffer_size()`` passes the high-water mark (64 KiB
    by default), ``resume_writing()`` at or below the low one, a failing protocol reported
    to the loop's exception handler. The subclass calls ``_maybe_pause_protocol()`` when
    its buffer grew and ``_maybe_resume_protocol()`` when it shrank."""

    __slots__ = ("_conn_lost",)

    #: Writes made after the connection was lost (each subclass starts it at 0).
    _conn_lost: int

    def _fatal_error(self, exc: BaseException, message: str) -> None:
        """Report ``exc`` (an OSError only in debug mode, as asyncio does: the peer's
        doing, not the program's) and close the transport at once."""
        if isinstance(exc, OSError):
            if self._loop.get_debug():
                from asyncio.log import logger

                logger.debug("%r: %s", self, message, exc_info=True)
        else:
            self._loop.call_exception_handler(
                {
                    "message": message,
                    "exception": exc,
                    "transport": self,
                    "protocol": self._protocol,
                }
            )
        self._force_close(exc)

    def _force_close(self, exc: BaseException | None) -> None:
        raise NotImplementedError

    def _drop_lost_write(self, warning: str) -> None:
        """A write after the connection was lost is dropped and counted; from the
        LOG_THRESHOLD_FOR_CONNLOST_WRITES-th on, each is logged (asyncio's rule)."""
        if self._conn_lost >= LOG_THRESHOLD_FOR_CONNLOST_WRITES:
            from asyncio.log import logger

            logger.warning(warning)
        self._conn_lost += 1

    if TYPE_CHECKING:  # what asyncio's mixin has, and typeshed does not declare
        _loop: LoopCore
        _protocol: Any
        _protocol_paused: bool
        _high_water: int
        _low_water: int

        def _maybe_pause_protocol(self) -> None: ...

        def _maybe_resume_protocol(self) -> None: ...


def socket_extra(extra: dict[str, Any], sock: socket.socket) -> None:
    """Fill a transport's ``socket``, ``sockname`` and (unless given) ``peername`` extras."""
    extra["socket"] = trsock.TransportSocket(sock)
    try:
        extra["sockname"] = sock.getsockname()
    except OSError:
        extra["sockname"] = None
    if "peername" not in extra:
        try:
            extra["peername"] = sock.getpeername()
        except OSError:
            extra["peername"] = None


class ProtocolState:
    """asyncio's ``set_protocol``/``get_protocol``/``is_closing`` over the ``_protocol``
    and ``_closing`` fields (the datagram and pipe transports; the stream transport
    caches its protocol's methods and asks its connection instead)."""

    __slots__ = ()

    _protocol: Any
    _closing: bool

    def set_protocol(self, protocol: Any) -> None:
        self._protocol = protocol

    def get_protocol(self) -> Any:
        return self._protocol

    def is_closing(self) -> bool:
        return self._closing


class ProtocolHandler(Handler):
    """The ioreactor handler behind every asyncio stream transport of a loop."""

    def on_connection(self, conn: TcpConnection) -> None:
        conn.context._connection_made()

    def on_read(self, conn: TcpConnection, data: memoryview) -> int:
        transport: StreamTransport = conn.context
        if transport._buffered:
            transport._feed_buffer(data)
            return len(data)
        try:
            transport._data_received(data.tobytes())
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            transport._fatal_error(exc, "Fatal error: protocol.data_received() call failed.")
        return len(data)

    def on_message(self, conn: TcpConnection, buffer: Buffer) -> None:
        """Bytes the connection kept in ``conn.input`` (the io_uring connection holds
        what arrives while reading is paused): the same delivery as :meth:`on_read`."""
        data = buffer.read_all()
        if data:
            self.on_read(conn, memoryview(data))

    def on_eof(self, conn: TcpConnection) -> bool:
        transport: StreamTransport = conn.context
        return transport._eof_received()

    def on_write_complete(self, conn: TcpConnection) -> None:
        transport: StreamTransport = conn.context
        if transport._protocol_paused:
            transport._maybe_resume_protocol()
        if transport._drain_waiters:
            transport._output_drained()
        if transport._close_after_drain:
            conn.close()

    def on_shutdown(self, conn: TcpConnection) -> None:
        conn.close()

    def on_close(self, conn: TcpConnection) -> None:
        conn.context._connection_closed(conn.error)


#: Every transport's connection uses the same handler.
PROTOCOL_HANDLER = ProtocolHandler()


class StreamTransport(FlowControl):
    """A connected stream socket as an asyncio transport (see the module docstring)."""

    _extra: dict[str, Any]  # BaseTransport's slot

    __slots__ = (
        "__weakref__",
        "_buffer_updated",
        "_buffered",
        "_close_after_drain",
        "_closing",
        "_conn",
        "_data_received",
        "_drain_waiters",
        "_eof",
        "_get_buffer",
        "_protocol",
        "_read_paused",
        "_sendfile_busy",
        "_server",
        "_waiter",
    )

    #: start_tls() may wrap it; loop.sendfile() may use os.sendfile on its socket.
    _start_tls_compatible = True
    _sendfile_compatible = constants._SendfileMode.TRY_NATIVE

    def __init__(
        self,
        loop: LoopCore,
        conn: TcpConnection,
        protocol: Any,
        waiter: Any = None,
        extra: dict[str, Any] | None = None,
        server: Any = None,
    ) -> None:
        super().__init__(extra, loop)
        self._conn = conn
        conn.context = self
        socket_extra(self._extra, conn.sock)
        self._waiter = waiter
        self._server = server
        self._closing = False
        self._close_after_drain = False
        self._eof = False
        self._conn_lost = 0
        self._read_paused = False
        self._sendfile_busy = False
        self._drain_waiters: list[Any] = []
        self.set_protocol(protocol)
        if server is not None:
            server._attach()

    def __repr__(self) -> str:
        state = "closed" if self._conn.closed else "closing" if self._closing else "open"
        return f"<StreamTransport fd={self._conn.fd} {state}>"

    def __del__(self, _warn: Any = warnings.warn) -> None:
        conn = getattr(self, "_conn", None)
        if conn is not None and not conn.closed:
            _warn(f"unclosed transport {self!r}", ResourceWarning, source=self)
            conn.sock.close()

    # -- starting ----------------------------------------------------------------------------

    def start(self) -> None:
        """Register with the reactor and call connection_made (a soon callback)."""
        self._conn.start()
        if self._conn.closed and self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(
                self._conn.error or ConnectionError("the connection could not be watched")
            )

    def _connection_made(self) -> None:
        try:
            self._protocol.connection_made(self)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._loop.call_exception_handler(
                {
                    "message": "protocol.connection_made() failed",
                    "exception": exc,
                    "transport": self,
                    "protocol": self._protocol,
                }
            )
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- protocol ----------------------------------------------------------------------------

    def set_protocol(self, protocol: Any) -> None:
        self._protocol = protocol
        self._buffered = isinstance(protocol, BufferedProtocol)
        if self._buffered:
            self._get_buffer = protocol.get_buffer
            self._buffer_updated = protocol.buffer_updated
        else:
            self._data_received = protocol.data_received

    def get_protocol(self) -> Any:
        return self._protocol

    def _feed_buffer(self, data: memoryview) -> None:
        """BufferedProtocol: copy the read into as many get_buffer()s as it needs."""
        n = len(data)
        pos = 0
        try:
            while pos < n:
                buf = memoryview(self._get_buffer(n - pos)).cast("B")
                size = min(len(buf), n - pos)
                if not size:
                    raise RuntimeError("get_buffer() returned an empty buffer")
                buf[:size] = data[pos : pos + size]
                pos += size
                self._buffer_updated(size)
                if self._conn.closed or not self._buffered:
                    break
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc, "Fatal error: protocol.buffer_updated() call failed.")
            return
        if pos < n and not self._conn.closed and not self._buffered:
            # set_protocol() to a plain Protocol in the middle of a read
            self._data_received(data[pos:].tobytes())

    def _eof_received(self) -> bool:
        try:
            keep_open = self._protocol.eof_received()
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc, "Fatal error: protocol.eof_received() call failed.")
            return False
        if not keep_open:
            self.close()
        return True  # the connection stays open until close() says otherwise

    def _connection_closed(self, exc: BaseException | None) -> None:
        """The connection closed (once): connection_lost runs on the next round."""
        self._closing = True
        self._loop.call_soon(self._call_connection_lost, exc)

    def _call_connection_lost(self, exc: BaseException | None) -> None:
        try:
            self._protocol.connection_lost(exc)
        finally:
            server, self._server = self._server, None
            if server is not None:
                server._detach()
            self._output_drained()
            # Break the cycles (connection <-> transport <-> protocol), as asyncio does:
            # a closed connection's protocol (an SSL context, say) goes at refcount zero.
            self._conn.context = None
            self._protocol = self._data_received = None
            self._get_buffer = self._buffer_updated = None
            self._waiter = None

    # -- reading -----------------------------------------------------------------------------

    def is_reading(self) -> bool:
        return not self._read_paused and not self._closing and not self._conn.closed

    def pause_reading(self) -> None:
        if not self.is_reading():
            return
        self._read_paused = True
        self._conn.pause_reading()
        if self._loop.get_debug():
            from asyncio.log import logger

            logger.debug("%r pauses reading", self)

    def resume_reading(self) -> None:
        if self._closing or not self._read_paused:
            return
        self._read_paused = False
        self._conn.resume_reading()

    # -- writing -----------------------------------------------------------------------------

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if type(data) is not bytes and not isinstance(data, (bytearray, memoryview)):
            raise TypeError(
                f"data argument must be a bytes-like object, not {type(data).__name__!r}"
            )
        if self._eof:
            raise RuntimeError("Cannot call write() after write_eof()")
        if self._sendfile_busy:
            raise RuntimeError("unable to write; sendfile is in progress")
        if not data:
            return
        conn = self._conn
        if conn.closed or self._conn_lost:
            self._drop_lost_write("socket.send() raised exception.")
            return
        conn.send(data)
        if conn.output_size > self._high_water:
            self._maybe_pause_protocol()

    def writelines(self, list_of_data: Any) -> None:
        for data in list_of_data:
            self.write(data)

    def write_eof(self) -> None:
        if self._closing or self._eof:
            return
        self._eof = True
        self._conn.shutdown()

    def can_write_eof(self) -> bool:
        return True

    def get_write_buffer_size(self) -> int:
        return self._conn.output_size

    # -- closing -----------------------------------------------------------------------------

    def is_closing(self) -> bool:
        return self._closing or self._conn.closed

    def close(self) -> None:
        """Stop reading; close once the output has drained. Until then write() still
        queues (asyncio's rule: a protocol may flush what it holds, as sslproto does
        after the peer's EOF)."""
        if self._closing:
            return
        self._closing = True
        conn = self._conn
        if conn.output_size and not conn.closed:
            conn.pause_reading()
            self._close_after_drain = True
        else:
            conn.close()

    def abort(self) -> None:
        self._closing = True
        self._conn.force_close()

    def _force_close(self, exc: BaseException | None) -> None:
        """Close now with ``exc`` for connection_lost (sslproto calls it on errors)."""
        self._closing = True
        if not self._conn.closed:
            self._conn.error = exc
            self._conn.force_close()

    # -- for loop.sendfile and start_tls ------------------------------------------------------

    @property
    def connection(self) -> TcpConnection:
        """The ioreactor connection underneath."""
        return self._conn

    def drained(self) -> Any:
        """A future done once the queued output has reached the kernel."""
        fut = self._loop.create_future()
        if not self._conn.output_size or self._conn.closed:
            fut.set_result(None)
        else:
            self._drain_waiters.append(fut)
        return fut

    def _output_drained(self) -> None:
        waiters, self._drain_waiters = self._drain_waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)
