"""The callbacks of the net layer in one place: what a user implements, what the net
layer calls on its owners.

::

    poller -> TcpConnection -> Handler.on_read / on_message ... on_close     (streams)
    poller -> UdpEndpoint   -> DatagramHandler.on_datagram ... on_close      (datagrams)
    TcpConnection closed    -> ConnectionOwner.connection_closed             (its server or client)

One handler object serves every connection of a server (muduo's callbacks, not one
protocol object per connection): methods receive the connection, and per-connection
state lives in ``conn.context``. Subclass and override what you need; every method has
a safe default. Frame-level code subclasses :class:`ioreactor.codec.FrameHandler`
(``on_frames`` / ``on_frame`` / ``on_frame_error``), itself a :class:`Handler`.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from ioreactor.net.buffer import Buffer
    from ioreactor.net.connection import TcpConnection
    from ioreactor.net.udp import UdpEndpoint

_udp_log = logging.getLogger("ioreactor.udp")


class Handler:
    """Stream connection callbacks; all run on the connection's own loop thread.

    Input arrives one of two ways. :meth:`on_message` gets ``conn.input`` (a
    :class:`~ioreactor.net.buffer.Buffer`): consume the whole messages, leave the rest
    for the next read. The default discards everything, so a handler that ignores input
    cannot make the buffer grow without bound.

    :meth:`on_read` is the optional fast path: while ``conn.input`` is empty, each read
    arrives as a view of the loop's read buffer, valid during the call only (copy what
    you keep); return how many bytes were consumed. The rest is copied into
    ``conn.input`` and :meth:`on_message` runs at once; later reads go to on_message
    until the buffer is empty again. Only a handler that overrides on_read gets it (and
    not a subclass that overrides only on_message: see :func:`reads_in_place`): a
    protocol that consumes whole reads saves the copy into the buffer and one call per
    read.

    By default the connection closes once its output has drained when the peer
    half-closes (:meth:`on_eof` returns False) and when the server shuts down
    (:meth:`on_shutdown` calls ``conn.close()``).
    """

    def on_connection(self, conn: TcpConnection) -> None:
        """The connection is established and registered with its loop."""

    def on_message(self, conn: TcpConnection, buffer: Buffer) -> None:
        """New bytes are in ``buffer``: consume the whole messages, leave the rest."""
        buffer.retrieve_all()

    def on_read(self, conn: TcpConnection, data: memoryview) -> int:
        """A read while ``conn.input`` is empty, as a view valid in this call: return bytes used."""
        return 0

    def on_write_complete(self, conn: TcpConnection) -> None:
        """All queued output reached the kernel (the output buffer is empty again)."""

    def on_high_water_mark(self, conn: TcpConnection, size: int) -> None:
        """Queued output crossed the connection's high water mark; reading is paused."""

    def on_eof(self, conn: TcpConnection) -> bool:
        """The peer half-closed (sent FIN): return True to keep writing (half-open)."""
        return False

    def on_shutdown(self, conn: TcpConnection) -> None:
        """The server is shutting down gracefully: say goodbye and let the connection end."""
        conn.close()

    def on_drain(self, conn: TcpConnection) -> None:
        """The server drains before it stops (``TcpServer.drain``): tell the peer, if you can."""

    def on_close(self, conn: TcpConnection) -> None:
        """The connection is closed (called exactly once); ``conn.error`` says why, if not."""


class DatagramHandler:
    """Datagram endpoint callbacks; all run on the endpoint's loop thread.

    One handler object may serve many endpoints; per-endpoint state goes in
    ``endpoint.context``. Errors are per datagram: after :meth:`on_error` the endpoint
    stays open (close it there if the error is final for you).
    """

    def on_datagram(self, endpoint: UdpEndpoint, data: bytes, addr: Any) -> None:
        """A datagram arrived from ``addr`` (None: an unbound Unix datagram sender)."""

    def on_error(self, endpoint: UdpEndpoint, exc: OSError) -> None:
        """A socket error (ECONNREFUSED on a connected endpoint, a failed send...): logged."""
        _udp_log.warning("%r: %s", endpoint, exc)

    def on_truncated(self, endpoint: UdpEndpoint, size: int, addr: Any) -> None:
        """A datagram of ``size`` bytes exceeded ``endpoint.max_datagram``; it was dropped."""
        _udp_log.warning(
            "%r: dropped a %d-byte datagram from %s (limit %d bytes)",
            endpoint,
            size,
            addr,
            endpoint.max_datagram,
        )

    def on_high_water_mark(self, endpoint: UdpEndpoint, size: int) -> None:
        """Queued output reached the high water mark; reading is paused."""

    def on_write_complete(self, endpoint: UdpEndpoint) -> None:
        """The send queue drained (the kernel took every queued datagram)."""

    def on_close(self, endpoint: UdpEndpoint) -> None:
        """The endpoint is closed (called exactly once)."""


class ConnectionOwner(Protocol):
    """The server or client that keeps a connection (internal: the net layer's own)."""

    def connection_closed(self, conn: TcpConnection) -> None:
        """``conn`` has closed (after its handler's ``on_close``): forget it."""


def overrides(handler: Handler, name: str) -> bool:
    """True when ``handler``'s class replaces :class:`Handler`'s method ``name``."""
    return getattr(type(handler), name) is not getattr(Handler, name)


def reads_in_place(handler: Handler) -> bool:
    """Whether the connection hands reads to ``handler.on_read``: when its class has one
    of its own, defined no higher up its classes than its ``on_message`` (a subclass that
    replaces only ``on_message`` of, say, ``EchoHandler`` means its on_message to run)."""
    cls = type(handler)
    known = _READS_IN_PLACE.get(cls)
    if known is None:
        known = False
        if overrides(handler, "on_read"):
            mro = cls.__mro__
            owner = {n: next(c for c in mro if n in vars(c)) for n in ("on_read", "on_message")}
            known = mro.index(owner["on_read"]) <= mro.index(owner["on_message"])
        _READS_IN_PLACE[cls] = known
    return known


#: ``reads_in_place`` per handler class (decided once, not per connection).
_READS_IN_PLACE: dict[type[Handler], bool] = {}
