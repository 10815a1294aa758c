"""What a module of the compiled hot path asks Cython, when Cython is not installed.

The pure build needs no Cython: ``import cython`` falls back to this module, which says
the code is not compiled (``cython.compiled`` is a compile-time True inside the
extension modules, where Cython resolves it itself).
"""

compiled = False
