"""The reactor: pollers, the event loop, timers."""

from ioreactor.loop.event_loop import EventLoop, LoopLag
from ioreactor.loop.poller import ERROR, HUP, READ, WRITE, Poller, available_pollers, create_poller
from ioreactor.loop.timers import Handle, TimerHandle

__all__ = [
    "ERROR",
    "HUP",
    "READ",
    "WRITE",
    "EventLoop",
    "Handle",
    "LoopLag",
    "Poller",
    "TimerHandle",
    "available_pollers",
    "create_poller",
]
