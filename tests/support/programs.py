"""External programs a test needs: found, or the test skipped naming what to install."""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence

import pytest


def require_program(name: str, need: str, paths: Sequence[str] = ()) -> str:
    """The executable ``name`` from PATH or one of ``paths`` (sbin directories are not
    always in a test's PATH); otherwise skip with ``need``, which says how to get it."""
    found = shutil.which(name) or next((p for p in paths if os.access(p, os.X_OK)), None)
    if found is None:
        pytest.skip(f"needs {need}")
    return found
