"""Helpers for ioreactor.aio's tests."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run(loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, T], timeout: float = 10) -> T:
    """Run ``coro`` on ``loop``, bounded in time."""
    return loop.run_until_complete(asyncio.wait_for(coro, timeout))
