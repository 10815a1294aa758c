"""Fixtures for ioreactor.aio: an asyncio Loop on every poller backend of this OS."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ioreactor.aio import Loop, new_event_loop


@pytest.fixture
def aio_loop(poller_name: str) -> Iterator[Loop]:
    """A :class:`Loop` on each backend (select, poll, epoll, epoll-et, uring)."""
    loop = new_event_loop(poller_name)
    yield loop
    if not loop.is_closed():
        loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()
