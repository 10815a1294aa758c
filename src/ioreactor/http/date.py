"""The ``Date`` response header, formatted at most once a second instead of per response.

One cache per process. Every loop that serves HTTP refreshes it when the wall-clock
second changes, at the start of the first iteration of the new second and before that
iteration's events (:meth:`EventLoop.call_each_second`): a response never carries the
previous second, after an idle gap or just past a boundary. :meth:`DateCache.refresh`
re-formats only when the second really changed (several loops share the cache).
Reading :attr:`DateCache.line` is one attribute load on the hot path.
"""

from __future__ import annotations

import time
from email.utils import formatdate


class DateCache:
    """Holds ``b"Date: <IMF-fixdate>\\r\\n"`` for the current second."""

    __slots__ = ("_second", "line")

    def __init__(self) -> None:
        self._second = -1
        self.line = b""
        self.refresh()

    def refresh(self, now: float | None = None) -> bool:
        """Re-format if the second changed; returns whether it did. ``now``: wall time."""
        second = int(time.time() if now is None else now)
        if second == self._second:
            return False
        self._second = second
        self.line = b"Date: " + formatdate(second, usegmt=True).encode("ascii") + b"\r\n"
        return True


#: The process-wide cache the server reads.
DATE = DateCache()
