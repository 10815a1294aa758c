"""What this installation of ioreactor is: its version and which build of it runs.

One source for the version: the installed distribution's metadata (pyproject.toml's
``version``), read through :mod:`importlib.metadata` by ``ioreactor --version`` and by
``ioreactor.__version__`` alike.

Two builds of one source. The modules on the per-message path are written once, as
``.py`` files. Where a ``.pxd`` file stands beside one, the installer compiles that
module with Cython (the ``.pxd`` adds C types to the unchanged Python source, as aiohttp
does for its WebSocket reader) into an extension module of the same name; without a C
compiler or Cython, or with ``IOREACTOR_NO_EXTENSIONS=1`` at install time, the ``.py``
files are what runs. ``IOREACTOR_NO_EXTENSIONS=1`` at import time forces the pure
modules even where the compiled ones are installed (as ``AIOHTTP_NO_EXTENSIONS`` does):
:func:`force_pure` puts a finder in front of the import system that loads each compiled
module's ``.py`` source instead. The compiled modules use each other's C types, so it is
all of them or none.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
from collections.abc import Sequence
from types import ModuleType

#: What :func:`version` says for a source tree that was never installed (no metadata).
UNKNOWN_VERSION = "0+unknown"


def version() -> str:
    """The installed ioreactor's version, e.g. ``0.1.0``."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as distribution_version

    try:
        return distribution_version("ioreactor")
    except PackageNotFoundError:
        return UNKNOWN_VERSION


#: The environment variable that asks for the pure-Python build (at install or import time).
NO_EXTENSIONS_VARIABLE = "IOREACTOR_NO_EXTENSIONS"

#: The modules that have a compiled build: each has a ``.pxd`` beside its ``.py``.
COMPILED_MODULES = (
    "ioreactor.echo",
    "ioreactor.http.date",
    "ioreactor.http.dispatch",
    "ioreactor.http.handler",
    "ioreactor.http.head",
    "ioreactor.http.headers",
    "ioreactor.http.metrics",
    "ioreactor.http.parser",
    "ioreactor.http.protocol",
    "ioreactor.http.request",
    "ioreactor.http.response",
    "ioreactor.http.response_queue",
    "ioreactor.http.router",
    "ioreactor.loop.channel",
    "ioreactor.loop.event_loop",
    "ioreactor.loop.poller",
    "ioreactor.net.buffer",
    "ioreactor.net.connection",
    "ioreactor.net.handlers",
)


def extensions_disabled() -> bool:
    """True when ``IOREACTOR_NO_EXTENSIONS`` is set to anything but empty or ``0``."""
    return os.environ.get(NO_EXTENSIONS_VARIABLE, "") not in ("", "0")


class _PureSourceFinder(importlib.abc.MetaPathFinder):
    """Finds a compiled module's ``.py`` source, so the pure build runs."""

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in COMPILED_MODULES or path is None:
            return None
        name = fullname.rpartition(".")[2]
        for directory in path:
            source = os.path.join(directory, name + ".py")
            if os.path.exists(source):
                return importlib.util.spec_from_file_location(fullname, source)
        return None


def force_pure() -> None:
    """Load the pure modules from now on (before any of them is imported)."""
    if not any(isinstance(finder, _PureSourceFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _PureSourceFinder())


def is_compiled(module: ModuleType) -> bool:
    """Whether ``module`` is an extension module (a compiled build of its source)."""
    origin = getattr(module, "__file__", None) or ""
    return origin.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES))


def build_kind() -> str:
    """``"compiled"`` (the Cython extension modules run) or ``"pure Python"``."""
    from ioreactor.net import connection

    return "compiled" if is_compiled(connection) else "pure Python"


def describe() -> str:
    """``ioreactor 0.1.0 (compiled)``: what ``ioreactor --version`` prints (and why the
    build is pure when ``IOREACTOR_NO_EXTENSIONS`` asked for it)."""
    forced = f", {NO_EXTENSIONS_VARIABLE}=1" if extensions_disabled() else ""
    return f"ioreactor {version()} ({build_kind()}{forced})"
