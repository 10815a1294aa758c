"""Apply skips.txt to CPython's asyncio tests collected here (see cpython_support)."""

from __future__ import annotations

import pytest
from cpython_support import read_skips


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    entries = read_skips()
    for item in items:
        module = item.nodeid.split("::", 1)[0].rsplit("/", 1)[-1].removesuffix(".py")
        key = module + "::" + item.nodeid.split("::", 1)[-1]
        entry = entries.get(key)
        if entry is None:
            continue
        kind, reason = entry
        if kind == "skip":
            item.add_marker(pytest.mark.skip(reason=reason))
        else:
            item.add_marker(pytest.mark.xfail(reason=reason, strict=False))
