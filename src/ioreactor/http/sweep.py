"""One periodic sweep per loop instead of a timer per request.

Every ``Limits.sweep_interval`` the sweep asks each HTTP connection on its loop to check
its deadlines (header, body, keep-alive, linger, write); and whenever the wall-clock
second changes, before the loop handles any event of that second, it refreshes the
cached ``Date`` (``tick``, through :meth:`EventLoop.call_each_second`). A connection
records progress with plain attribute stores (its phase and when it began,
``conn.last_read``/``last_write``), so activity costs nothing and the sweep costs O(n)
once per interval: about a microsecond per connection per second.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ioreactor.http.protocol import HttpProtocol
    from ioreactor.loop.event_loop import EventLoop

log = logging.getLogger("ioreactor.http")


class ConnectionSweep:
    """The HTTP connections of one loop and the timer that checks them."""

    def __init__(self, loop: EventLoop, interval: float, tick: Callable[[], None]) -> None:
        self.loop = loop
        self.protocols: set[HttpProtocol] = set()
        self._timer = loop.call_every(interval, self.run)
        self._date = loop.call_each_second(tick)

    def run(self) -> None:
        now = self.loop.now
        for protocol in list(self.protocols):
            try:
                protocol.check_timeouts(now)
            except Exception:
                log.exception("%r: timeout check failed; closing it", protocol)
                protocol.conn.force_close()

    def close(self) -> None:
        self._timer.cancel()
        self._date.cancel()
