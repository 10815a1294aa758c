"""The bounded blocking queue between the acceptor and the pool (生产者-消费者).

The course's thread-pool model hands accepted descriptors to workers through a monitor
(管程, "wait–notify"): the producer waits while the queue is full, consumers wait while
it is empty. ``queue.Queue`` has no way to wake its waiters for shutdown, so this one
adds ``close``. The condition uses an ``RLock`` so ``close`` may run in a signal handler
on the main thread even when that thread is inside ``put``: the handler re-enters the
lock instead of deadlocking on it.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Generic, TypeVar

T = TypeVar("T")


class BlockingQueue(Generic[T]):
    """A FIFO of at most ``capacity`` items; ``close`` releases every waiter."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self._capacity = capacity
        self._items: deque[T] = deque()
        self._cond = threading.Condition(threading.RLock())
        self._closed = False

    def put(self, item: T) -> bool:
        """Append ``item``, waiting while full; False (item not taken) once closed."""
        with self._cond:
            while len(self._items) >= self._capacity and not self._closed:
                self._cond.wait()
            if self._closed:
                return False
            self._items.append(item)
            self._cond.notify()
            return True

    def get(self) -> T | None:
        """Take the oldest item, waiting while empty; None once closed."""
        with self._cond:
            while not self._items and not self._closed:
                self._cond.wait()
            if self._closed:
                return None
            item = self._items.popleft()
            self._cond.notify()
            return item

    def close(self) -> None:
        """Refuse further puts and gets and wake everyone waiting."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def drain(self) -> list[T]:
        """Remove and return the items nobody took (after ``close``, to release them)."""
        with self._cond:
            items = list(self._items)
            self._items.clear()
            return items
