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
