"""A package's names imported on first use (PEP 562), so importing one submodule does not
load the rest (``ioreactor.http.limits`` for the CLI's defaults without httptools, say).

::

    __getattr__ = lazy_exports(__name__, {"HttpServer": "server", ...})
    ioreactor.http.HttpServer -> __getattr__ -> import ioreactor.http.server -> its HttpServer
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(package: str, exports: Mapping[str, str]) -> Callable[[str], Any]:
    """The module ``__getattr__`` of ``package``: ``name`` from the submodule
    ``exports[name]``, AttributeError for any other name."""

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{module}"), name)

    return __getattr__
