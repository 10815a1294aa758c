"""What this installation of ioreactor is: its version and how it was built.

One source for the version: the installed distribution's metadata (pyproject.toml's
``version``), read through :mod:`importlib.metadata` by ``ioreactor --version`` and by
``ioreactor.__version__`` alike.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as distribution_version

#: What :func:`version` says for a source tree that was never installed (no metadata).
UNKNOWN_VERSION = "0+unknown"


def version() -> str:
    """The installed ioreactor's version, e.g. ``0.1.0``."""
    try:
        return distribution_version("ioreactor")
    except PackageNotFoundError:
        return UNKNOWN_VERSION


def build_kind() -> str:
    """How the running modules were built: ``"pure Python"`` today.

    The hook for the compiled build (DESIGN.md: the per-message modules compiled, the
    ``.py`` files kept runnable, ``IOREACTOR_NO_EXTENSIONS=1`` for the pure build): it
    will say which of the two is loaded.
    """
    return "pure Python"


def describe() -> str:
    """``ioreactor 0.1.0 (pure Python)``: what ``ioreactor --version`` prints."""
    return f"ioreactor {version()} ({build_kind()})"
