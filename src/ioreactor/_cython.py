"""What a module of the compiled hot path asks Cython, when Cython is not installed.

The pure build needs no Cython: ``import cython`` falls back to this module, which says
the code is not compiled (``cython.compiled`` is a compile-time True inside the
extension modules, where Cython resolves it itself).
"""

from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

compiled = False


def freelist(size: int) -> Callable[[T], T]:
    """``@cython.freelist(size)``: a compiled class's free-list; nothing here."""
    return cclass


def cclass(cls: T) -> T:
    """``@cython.cclass``: a compiled class (its C fields in the ``.pxd``); as it is here."""
    return cls
