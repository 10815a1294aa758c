"""The ``Date`` response header, formatted at most once a second instead of per response.

One cache per process: every loop's periodic sweep calls :meth:`DateCache.refresh`, which
re-formats only when the wall-clock second changed. Reading :attr:`DateCache.line` is one
attribute load on the hot path.
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
