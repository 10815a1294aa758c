"""What the loop's fd table holds: a channel, told of its fd's readiness (muduo's Channel).

::

    poller: fd ready for mask -> loop's table[fd] -> channel.handle_events(mask)

A connection is a channel itself, so the loop calls its method straight from the table:
no bound method is kept per connection (64 bytes of heap each). Anything else watches an
fd with a plain callback (:meth:`EventLoop.watch`), which the loop keeps in a
:class:`CallbackChannel`.
"""

from __future__ import annotations

from collections.abc import Callable


class Channel:
    """An fd's owner as the loop sees it; subclasses implement :meth:`handle_events`."""

    __slots__ = ()

    def handle_events(self, mask: int) -> bool:
        """The fd is ready for ``mask`` (READ, WRITE, ERROR, HUP bits); the loop ignores
        the result (a connection says whether it read something)."""
        raise NotImplementedError


class CallbackChannel(Channel):
    """A plain ``callback(mask)`` in the loop's table (acceptors, wakers, datagrams...)."""

    __slots__ = ("callback",)

    def __init__(self, callback: Callable[[int], object]) -> None:
        self.callback = callback

    def __repr__(self) -> str:
        return f"<CallbackChannel {self.callback!r}>"

    def handle_events(self, mask: int) -> bool:
        self.callback(mask)
        return False
