"""Running CPython's own asyncio tests (the interpreter's ``test.test_asyncio``) on
ioreactor.aio: the loop factory, the policy for the loop-independent modules, and the
skip file (``skips.txt``: each test not run, or expected to fail, with its reason)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from ioreactor.aio import EventLoopPolicy, Loop, new_event_loop

SKIP_FILE = Path(__file__).with_name("skips.txt")

_saved: list[asyncio.AbstractEventLoopPolicy] = []


def create_loop() -> Loop:
    return new_event_loop()


def install_policy() -> None:
    """setUpModule of a loop-independent module: asyncio.new_event_loop() is ours."""
    _saved.append(asyncio.get_event_loop_policy())
    asyncio.set_event_loop_policy(EventLoopPolicy())


def restore_policy() -> None:
    asyncio.set_event_loop_policy(_saved.pop() if _saved else None)


def read_skips() -> dict[str, tuple[str, str]]:
    """``{"module::Class::test": (kind, reason)}``; kind is ``skip`` or ``xfail``."""
    entries: dict[str, tuple[str, str]] = {}
    for raw in SKIP_FILE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        kind, node, reason = line.split(None, 2)
        if kind not in ("skip", "xfail"):
            raise ValueError(f"{SKIP_FILE.name}: unknown kind {kind!r} in {raw!r}")
        entries[node] = (kind, reason)
    return entries
