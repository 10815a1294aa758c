"""The core TCP connection tests, re-run on the completion-mode loop.

The functions of ``tests/net/test_connection.py`` are collected here a second time; this
directory's ``conftest.py`` overrides their ``loop`` / ``loop_thread`` fixtures with a
completion-mode loop, so TcpServer, the handlers and every assertion run unchanged over
io_uring -- the issue's "one more parametrization", without touching the core's tests.
Tests of a readiness mechanism itself (counting ``send`` syscalls, edge-triggered
draining) are listed in ``READINESS_ONLY`` with the reason and not re-collected.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "net"))
import test_connection as core

pytestmark = pytest.mark.timeout(60)

#: Core tests that observe the readiness path itself, with why they do not apply.
READINESS_ONLY: dict[str, str] = {}

for _name in dir(core):
    if _name.startswith("test_") and _name not in READINESS_ONLY:
        globals()[_name] = getattr(core, _name)
