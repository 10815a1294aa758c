"""Fixtures for ioreactor.aio: an asyncio Loop on every poller backend of this OS."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

import pytest

from ioreactor.aio import Loop, new_event_loop

T = TypeVar("T")


@pytest.fixture
def aio_loop(poller_name: str) -> Iterator[Loop]:
    """A :class:`Loop` on each backend (select, poll, epoll, epoll-et, uring)."""
    loop = new_event_loop(poller_name)
    yield loop
    if not loop.is_closed():
        loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()


def run(loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, T], timeout: float = 10) -> T:
    """Run ``coro`` on ``loop``, bounded in time."""
    return loop.run_until_complete(asyncio.wait_for(coro, timeout))
