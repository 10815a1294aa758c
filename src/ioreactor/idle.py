"""Idle detection: reader-idle, writer-idle and all-idle events (Netty's IdleStateHandler).

Semantics, per connection and per kind: the event fires once the connection has been
idle for the kind's timeout, and again after each further full timeout of continued
idleness; activity restarts the count.

=========  ==========================================================================
kind       idle means
=========  ==========================================================================
READER     nothing received for ``reader_idle`` seconds (``conn.last_read``)
WRITER     nothing handed to the kernel for ``writer_idle`` seconds (``conn.last_write``)
ALL        neither, for ``all_idle`` seconds
=========  ==========================================================================

Cost: the connection already records its activity (one attribute store per read or
write); nothing else happens per read or write -- no timer is created, moved or
cancelled. Each watched connection holds one entry on a :class:`TimingWheel` (one per
loop), due at its earliest possible event. When the entry comes up the monitor compares
the recorded times with now: it fires what is due and moves the entry to the next
possible event, which is later if the connection was active in between.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable

from ioreactor.loop.timing_wheel import SLOTS, PerLoopWheels, TimingWheel, WheelEntry
from ioreactor.net.connection import TcpConnection
from ioreactor.net.handlers import Handler

#: Wheel ticks per (shortest) timeout when the monitor creates its own wheels: events
#: come at most a tenth of the timeout late.
TICKS_PER_TIMEOUT = 10


class IdleKind(enum.Enum):
    """Which direction has been idle."""

    READER = "reader"
    WRITER = "writer"
    ALL = "all"


#: The kinds in the order a watch keeps their due times.
_KINDS = (IdleKind.READER, IdleKind.WRITER, IdleKind.ALL)


def _last_activity(conn: TcpConnection, kind: IdleKind) -> float:
    """When ``conn`` was last active in the direction ``kind`` watches."""
    if kind is IdleKind.READER:
        return conn.last_read
    if kind is IdleKind.WRITER:
        return conn.last_write
    return max(conn.last_read, conn.last_write)


class _Watch:
    """One watched connection: its wheel entry and the next time each kind may fire."""

    __slots__ = ("conn", "due", "entry", "wheel")

    def __init__(self, conn: TcpConnection, wheel: TimingWheel) -> None:
        self.conn = conn
        self.wheel = wheel
        self.entry: WheelEntry[_Watch] | None = None
        #: Per kind, in ``_KINDS`` order; infinity for a disabled kind.
        self.due = [math.inf, math.inf, math.inf]


class IdleMonitor:
    """Calls ``on_idle(conn, kind)`` for idle connections; see the module docstring.

    A timeout of 0 disables that kind. ``wheel`` shares one wheel (and a test's hand-
    driven clock); by default the monitor makes one wheel per loop, ticking
    ``TICKS_PER_TIMEOUT`` times per shortest timeout.
    """

    def __init__(
        self,
        on_idle: Callable[[TcpConnection, IdleKind], object],
        *,
        reader_idle: float = 0.0,
        writer_idle: float = 0.0,
        all_idle: float = 0.0,
        wheel: TimingWheel | None = None,
    ) -> None:
        timeouts = (reader_idle, writer_idle, all_idle)
        if min(timeouts) < 0:
            raise ValueError("idle timeouts must be >= 0 (0 disables a kind)")
        #: The enabled kinds: (index in ``_KINDS``, kind, timeout).
        self._enabled = [
            (i, kind, timeout)
            for i, (kind, timeout) in enumerate(zip(_KINDS, timeouts, strict=True))
            if timeout
        ]
        if not self._enabled:
            raise ValueError("give at least one positive idle timeout (0 disables a kind)")
        self.on_idle = on_idle
        self.reader_idle = reader_idle
        self.writer_idle = writer_idle
        self.all_idle = all_idle
        self._wheel = wheel
        shortest = min(t for _, _, t in self._enabled)
        self._wheels = PerLoopWheels(tick=shortest / TICKS_PER_TIMEOUT, slots=SLOTS)
        self._watches: dict[TcpConnection, _Watch] = {}
        self._visit = self._check

    def __len__(self) -> int:
        return len(self._watches)

    def watch(self, conn: TcpConnection) -> None:
        """Start watching ``conn`` (its loop thread); its idle time counts from its last
        recorded activity."""
        if conn in self._watches:
            return
        wheel = self._wheel if self._wheel is not None else self._wheels.for_loop(conn.loop)
        watch = _Watch(conn, wheel)
        for i, kind, timeout in self._enabled:
            watch.due[i] = _last_activity(conn, kind) + timeout
        self._watches[conn] = watch
        watch.entry = wheel.schedule(min(watch.due), self._visit, watch)

    def unwatch(self, conn: TcpConnection) -> None:
        """Stop watching ``conn`` (call it from ``on_close``)."""
        watch = self._watches.pop(conn, None)
        if watch is not None and watch.entry is not None:
            watch.wheel.cancel(watch.entry)
            watch.entry = None

    def _check(self, watch: _Watch, now: float) -> None:
        """The connection's wheel slot came up: fire what is due, re-slot the rest.

        Per kind: if its check time has come and the connection has been idle for a full
        timeout, fire and check again a full timeout from now; if there was activity,
        check again a timeout after that activity.
        """
        conn = watch.conn
        due = watch.due
        for i, kind, timeout in self._enabled:
            if due[i] <= now:
                last = _last_activity(conn, kind)
                if last + timeout <= now:
                    due[i] = now + timeout
                    self.on_idle(conn, kind)
                    if watch.entry is None:
                        return  # the callback closed the connection
                else:
                    due[i] = last + timeout
        entry = watch.entry
        if entry is not None:
            watch.wheel.reschedule(entry, min(due))


class IdleStateHandler(Handler):
    """A handler with Netty's IdleStateHandler built in: override :meth:`on_idle`.

    It watches each connection from ``on_connection`` to ``on_close``; a subclass that
    overrides those must call ``super()``.
    """

    def __init__(
        self,
        *,
        reader_idle: float = 0.0,
        writer_idle: float = 0.0,
        all_idle: float = 0.0,
        wheel: TimingWheel | None = None,
    ) -> None:
        self.idle = IdleMonitor(
            self.on_idle,
            reader_idle=reader_idle,
            writer_idle=writer_idle,
            all_idle=all_idle,
            wheel=wheel,
        )

    def on_connection(self, conn: TcpConnection) -> None:
        self.idle.watch(conn)

    def on_close(self, conn: TcpConnection) -> None:
        self.idle.unwatch(conn)

    def on_idle(self, conn: TcpConnection, kind: IdleKind) -> None:
        """``conn`` has been idle in direction ``kind`` for that kind's timeout."""
