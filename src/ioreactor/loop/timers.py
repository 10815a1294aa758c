"""Deferred callbacks: cancellable handles and the deadline heap.

Cancellation is lazy: :meth:`Handle.cancel` only marks the handle, and the heap drops it
when it reaches the top. That makes cancelling O(1) and safe from anywhere -- including
from inside the very timer callback being run, which is how a periodic timer stops itself.
When cancelled entries outnumber live ones the heap is rebuilt (by the loop thread, on
the next schedule), so a server that cancels many timers (a deadline per request) does
not keep them all alive.
"""

from __future__ import annotations

import heapq
import itertools
import threading
from collections.abc import Callable
from typing import Any


class Handle:
    """A callback queued on a loop; ``cancel()`` keeps it from running."""

    __slots__ = ("_args", "_callback", "cancelled")

    def __init__(self, callback: Callable[..., object], args: tuple[Any, ...]) -> None:
        self._callback = callback
        self._args = args
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True

    def run(self) -> None:
        self._callback(*self._args)

    def __repr__(self) -> str:
        state = " cancelled" if self.cancelled else ""
        return f"<{type(self).__name__} {self._callback!r}{state}>"


class TimerHandle(Handle):
    """A callback due at ``when`` (loop time); periodic when ``interval`` is set."""

    __slots__ = ("_queue", "interval", "when")

    def __init__(
        self,
        when: float,
        callback: Callable[..., object],
        args: tuple[Any, ...],
        queue: TimerQueue,
        interval: float | None = None,
    ) -> None:
        super().__init__(callback, args)
        self.when = when
        self.interval = interval
        self._queue: TimerQueue | None = queue

    def cancel(self) -> None:
        if not self.cancelled:
            self.cancelled = True
            if self._queue is not None:
                self._queue._note_cancelled()


class TimerQueue:
    """A min-heap of (deadline, sequence, handle); the sequence keeps FIFO order on ties."""

    __slots__ = ("_cancelled", "_heap", "_seq", "owner_thread")

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, TimerHandle]] = []
        self._seq = itertools.count()
        self._cancelled = 0
        #: The thread of the loop that runs these timers (None: no loop yet).
        self.owner_thread: int | None = None

    def __len__(self) -> int:
        return len(self._heap) - self._cancelled

    def add(self, handle: TimerHandle) -> None:
        """Schedule ``handle`` (loop thread only)."""
        if self._cancelled > 64 and self._cancelled * 2 > len(self._heap):
            self._compact()
        heapq.heappush(self._heap, (handle.when, next(self._seq), handle))

    def next_deadline(self) -> float | None:
        """Deadline of the earliest live timer, dropping cancelled ones on the way."""
        heap = self._heap
        while heap:
            handle = heap[0][2]
            if not handle.cancelled:
                return heap[0][0]
            heapq.heappop(heap)
            self._cancelled -= 1
            handle._queue = None
        return None

    def pop_due(self, now: float) -> list[TimerHandle]:
        """Remove and return every live timer due at or before ``now``, in deadline order.

        A periodic timer is pushed back for its next period before it is returned, so a
        callback that cancels it (its own handle) simply marks the new entry.
        """
        heap = self._heap
        due: list[TimerHandle] = []
        while heap and heap[0][0] <= now:
            handle = heapq.heappop(heap)[2]
            if handle.cancelled:
                self._cancelled -= 1
                handle._queue = None
                continue
            due.append(handle)
            if handle.interval is not None:
                # Next period from the schedule, not from now; a loop that fell behind
                # runs a periodic timer once, not in a burst of missed periods.
                when = handle.when + handle.interval
                handle.when = when if when > now else now + handle.interval
                heapq.heappush(heap, (handle.when, next(self._seq), handle))
            else:
                handle._queue = None
        return due

    def _note_cancelled(self) -> None:
        # cancel() may run on any thread: only the owning loop thread rebuilds the heap
        # (here, or on its next add()).
        self._cancelled += 1
        if (
            self._cancelled > 64
            and self._cancelled * 2 > len(self._heap)
            and threading.get_ident() == self.owner_thread
        ):
            self._compact()

    def _compact(self) -> None:
        live = []
        for entry in self._heap:
            if entry[2].cancelled:
                entry[2]._queue = None
            else:
                live.append(entry)
        heapq.heapify(live)
        self._heap = live
        self._cancelled = 0
