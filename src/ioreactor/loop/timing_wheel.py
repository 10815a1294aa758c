"""A hashed timing wheel: many coarse deadlines for the price of one loop timer.

::

      tick:   0      1      2      3            n-1
            +------+------+------+------+     +------+
    slots   |      | e  e |      |  e   | ... |  e   |
            +------+------+------+------+     +------+
                      ^ the cursor moves one slot per tick

An entry due at time ``when`` sits in the slot of the first tick at or after ``when``
(tick ``k`` is time ``origin + k * tick``; slot ``k % n``). One periodic loop timer
(:meth:`EventLoop.call_every`, running only while the wheel holds entries) advances the
cursor; visiting a slot calls ``callback(arg, now)`` for each entry that is due. An entry
due more than one revolution ahead also lands in its slot and is simply placed again
when the cursor passes it early: it keeps its deadline, not a rounds counter.

Schedule, reschedule and cancel are O(1) dict operations. An entry fires at the first
tick boundary at or after its deadline: up to one tick (plus loop latency) late, never
early. This is the right trade for idle timeouts, where thousands of connections each
need a deadline that moves on every read: the reads only store a timestamp
(``conn.last_read``), and the wheel compares when the slot comes up.

Without a loop the wheel is driven by hand (``advance(now)``), which is how tests run
it on a deterministic clock.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Generic, TypeVar

if TYPE_CHECKING:
    from ioreactor.loop.event_loop import EventLoop
    from ioreactor.loop.timers import TimerHandle

log = logging.getLogger("ioreactor.loop")

T = TypeVar("T")

#: Default tick: the wheel's resolution in seconds.
TICK = 0.1
#: Default number of slots (one revolution = SLOTS * tick seconds).
SLOTS = 512

_UNLINKED = -1


class WheelEntry(Generic[T]):
    """One deadline on a wheel: ``callback(arg, now)`` once the wheel passes ``when``."""

    __slots__ = ("arg", "callback", "slot", "when")

    def __init__(self, when: float, callback: Callable[[T, float], object], arg: T) -> None:
        self.when = when
        self.callback = callback
        self.arg = arg
        #: Index of the slot holding this entry, or -1 when it is not scheduled.
        self.slot = _UNLINKED

    @property
    def scheduled(self) -> bool:
        return self.slot != _UNLINKED

    def __repr__(self) -> str:
        return f"<WheelEntry when={self.when:.3f} slot={self.slot} {self.callback!r}>"


class TimingWheel:
    """Coarse deadlines in O(1); see the module docstring.

    ``loop``: the loop whose periodic timer drives the wheel, or None to drive it by
    calling :meth:`advance`. ``clock``: the time source for the loop timer (default
    ``loop.time``), in the same time base as the deadlines.
    """

    __slots__ = (
        "_advancing",
        "_clock",
        "_count",
        "_firing",
        "_loop",
        "_origin",
        "_slots",
        "_tick_no",
        "_timer",
        "slot_count",
        "tick",
    )

    def __init__(
        self,
        loop: EventLoop | None = None,
        *,
        tick: float = TICK,
        slots: int = SLOTS,
        clock: Callable[[], float] | None = None,
    ) -> None:
        if not tick > 0:
            raise ValueError(f"tick must be > 0, got {tick}")
        if slots < 1:
            raise ValueError(f"slots must be >= 1, got {slots}")
        self.tick = tick
        self.slot_count = slots
        self._loop = loop
        self._clock = clock or (loop.time if loop is not None else time.monotonic)
        self._origin = self._clock()
        self._slots: list[dict[WheelEntry[Any], None]] = [{} for _ in range(slots)]
        #: The last tick whose slot has been visited.
        self._tick_no = 0
        self._count = 0
        self._firing: dict[WheelEntry[Any], None] | None = None
        self._advancing = False
        self._timer: TimerHandle | None = None

    def __len__(self) -> int:
        """Entries scheduled."""
        return self._count

    def __repr__(self) -> str:
        return f"<TimingWheel tick={self.tick} slots={self.slot_count} entries={self._count}>"

    @property
    def running(self) -> bool:
        """True while the loop timer that drives the wheel is armed."""
        return self._timer is not None

    # -- scheduling ------------------------------------------------------------------------

    def schedule(
        self, when: float, callback: Callable[[T, float], object], arg: T
    ) -> WheelEntry[T]:
        """Call ``callback(arg, now)`` once the wheel passes ``when``."""
        entry = WheelEntry(when, callback, arg)
        self._link(entry)
        return entry

    def reschedule(self, entry: WheelEntry[Any], when: float) -> None:
        """Move ``entry`` to a new deadline (scheduling it again if it already fired)."""
        if entry.slot != _UNLINKED:
            self._unlink(entry)
        entry.when = when
        self._link(entry)

    def cancel(self, entry: WheelEntry[Any]) -> None:
        """Unschedule ``entry``; a no-op when it is not scheduled."""
        if entry.slot != _UNLINKED:
            self._unlink(entry)
            if not self._count and not self._advancing:
                self._stop_timer()

    def _link(self, entry: WheelEntry[Any]) -> None:
        if self._timer is None and self._loop is not None and not self._advancing:
            self._start_timer(self._loop)
        k = math.ceil((entry.when - self._origin) / self.tick)
        if k <= self._tick_no:
            k = self._tick_no + 1
        slot = k % self.slot_count
        entry.slot = slot
        self._slots[slot][entry] = None
        self._count += 1

    def _unlink(self, entry: WheelEntry[Any]) -> None:
        self._slots[entry.slot].pop(entry, None)
        firing = self._firing
        if firing is not None:
            firing.pop(entry, None)  # it may sit in the batch being visited
        entry.slot = _UNLINKED
        self._count -= 1

    # -- driving ---------------------------------------------------------------------------

    def advance(self, now: float) -> int:
        """Visit every slot whose tick has come by ``now``; returns the entries fired.

        Called by the loop timer, or directly with fake times in tests.
        """
        target = math.floor((now - self._origin) / self.tick)
        last = self._tick_no
        if target <= last:
            return 0
        # After a stall longer than a revolution, each slot needs one visit only.
        first = max(last + 1, target - self.slot_count + 1)
        fired = 0
        slots = self._slots
        n = self.slot_count
        self._advancing = True
        try:
            for k in range(first, target + 1):
                self._tick_no = k
                index = k % n
                batch = slots[index]
                if not batch:
                    continue
                slots[index] = {}
                self._firing = batch
                while batch:
                    entry = batch.popitem()[0]
                    entry.slot = _UNLINKED
                    self._count -= 1
                    if entry.when > now:  # more than a revolution ahead: place again
                        self._link(entry)
                        continue
                    fired += 1
                    try:
                        entry.callback(entry.arg, now)
                    except Exception:
                        log.exception("timing wheel: callback %r failed", entry.callback)
                self._firing = None
        finally:
            self._firing = None
            self._advancing = False
        if not self._count:
            self._stop_timer()
        return fired

    def _on_tick(self) -> None:
        self.advance(self._clock())

    def _start_timer(self, loop: EventLoop) -> None:
        if not self._count:
            # An empty wheel can restart its ticks at the present, so that the loop timer
            # fires right on tick boundaries (entries are then at most one tick late).
            self._origin = self._clock()
            self._tick_no = 0
        self._timer = loop.call_every(self.tick, self._on_tick)

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


class PerLoopWheels:
    """One wheel per loop, created on first use: for a handler whose connections may live
    on several loops (one handler object serves a whole server)."""

    __slots__ = ("_wheels", "slots", "tick")

    def __init__(self, tick: float = TICK, slots: int = SLOTS) -> None:
        self.tick = tick
        self.slots = slots
        self._wheels: dict[EventLoop, TimingWheel] = {}

    def for_loop(self, loop: EventLoop) -> TimingWheel:
        wheel = self._wheels.get(loop)
        if wheel is None:
            wheel = self._wheels[loop] = TimingWheel(loop, tick=self.tick, slots=self.slots)
        return wheel
