"""Ways in: ``new_event_loop()``, ``run()``, the policy and ``install()`` (uvloop's shape).

asyncio.run(main(), loop_factory=ioreactor.aio.new_event_loop)   # Python 3.12+
ioreactor.aio.run(main())                                       # 3.11 too
ioreactor.aio.install(); asyncio.run(main())                     # via the policy
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Coroutine
from typing import Any, TypeVar

from ioreactor.aio.loop import Loop

T = TypeVar("T")


def new_event_loop(poller: str | None = None) -> Loop:
    """A new :class:`Loop` on ``poller`` (None: epoll, or the best this OS has)."""
    return Loop(poller)


def run(main: Coroutine[Any, Any, T], *, debug: bool | None = None, poller: str | None = None) -> T:
    """``asyncio.run(main)`` on a new :class:`Loop` (asyncio.Runner: 3.11 and later)."""
    factory = functools.partial(new_event_loop, poller)
    with asyncio.Runner(debug=debug, loop_factory=factory) as runner:
        return runner.run(main)


class EventLoopPolicy(asyncio.DefaultEventLoopPolicy):
    """The default policy, whose new loops are :class:`Loop` on ``poller``."""

    def __init__(self, poller: str | None = None) -> None:
        super().__init__()
        self.poller = poller

    def new_event_loop(self) -> asyncio.AbstractEventLoop:
        return new_event_loop(self.poller)


def install(poller: str | None = None) -> EventLoopPolicy:
    """Make asyncio's default loop an ioreactor :class:`Loop` (set the policy)."""
    policy = EventLoopPolicy(poller)
    asyncio.set_event_loop_policy(policy)
    return policy
