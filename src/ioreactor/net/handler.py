"""What a server or client calls when something happens on a connection.

One handler object serves every connection of a server (muduo's callbacks, not one
protocol object per connection): methods receive the connection, and per-connection
state lives in ``conn.context``. Subclass and override what you need; every method has
a safe default.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ioreactor.net.buffer import Buffer
    from ioreactor.net.connection import TcpConnection


class Handler:
    """Connection event callbacks; all run on the connection's own loop thread."""

    def on_connection(self, conn: TcpConnection) -> None:
        """The connection is established and registered with its loop."""

    def on_message(self, conn: TcpConnection, buffer: Buffer) -> None:
        """New bytes arrived; consume what forms whole messages and leave the rest.

        The default discards everything, so a handler that ignores input cannot make the
        buffer grow without bound.
        """
        buffer.retrieve_all()

    def on_read(self, conn: TcpConnection, data: memoryview) -> int:
        """Optional fast path: bytes that arrived while ``conn.input`` was empty, as a
        view of the loop's read buffer, valid during this call only (copy what you keep).

        Return how many bytes were consumed. The rest is copied into ``conn.input`` and
        :meth:`on_message` runs at once; later reads go to on_message until the buffer
        is empty again. Only a handler that overrides this method gets it (and not a
        subclass that overrides only on_message: see :func:`reads_in_place`): a protocol
        that consumes whole reads saves the copy into the buffer and one call per read.
        """
        return 0

    def on_write_complete(self, conn: TcpConnection) -> None:
        """All queued output reached the kernel (the output buffer is empty again)."""

    def on_high_water_mark(self, conn: TcpConnection, size: int) -> None:
        """Queued output crossed the connection's high water mark; reading is paused."""

    def on_eof(self, conn: TcpConnection) -> bool:
        """The peer half-closed (sent FIN). Return True to keep writing (half-open).

        By default the connection closes once its queued output has drained.
        """
        return False

    def on_shutdown(self, conn: TcpConnection) -> None:
        """The server is shutting down gracefully: say goodbye and let the connection end.

        The default closes the connection once its queued output has drained.
        """
        conn.close()

    def on_close(self, conn: TcpConnection) -> None:
        """The connection is closed (called exactly once); ``conn.error`` says why, if not."""


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
