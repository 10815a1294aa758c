"""A connection kept busy on a thread of its own while a test breaks something else.

``Chatter(exchange)`` calls ``exchange(n)`` (the n-th request and its checked answer)
again and again until :meth:`Chatter.stop`; it counts the exchanges, so a test can wait
for progress, and keeps the first error, so a test can say which connections lived on.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from ioreactor.testing import LIVENESS


class Chatter(threading.Thread):
    """Runs ``exchange(n)`` for n = 0, 1, 2, ... until stopped or until it raises."""

    def __init__(self, exchange: Callable[[int], None]) -> None:
        super().__init__(daemon=True)
        self._exchange = exchange
        self.done = threading.Event()
        self.exchanges = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while not self.done.is_set():
                self._exchange(self.exchanges)
                self.exchanges += 1
        except BaseException as exc:
            self.error = exc

    def stop(self) -> None:
        self.done.set()
        self.join(LIVENESS)
