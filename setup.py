"""Build the compiled hot path with Cython where possible; pure Python otherwise.

Every ``src/ioreactor/**/X.py`` with an ``X.pxd`` beside it is compiled into the
extension module ``X`` (the ``.py`` stays the source: see ``ioreactor/build.py``).
``IOREACTOR_NO_EXTENSIONS=1`` skips the compilation; so does a missing Cython or C
compiler, and an extension that fails to build: each with one warning line, never a
failed install.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = Path(__file__).parent
SOURCE_ROOT = HERE / "src"


def _warn(message: str) -> None:
    print(f"WARNING: ioreactor: {message}; installing the pure-Python build", file=sys.stderr)


def _compiled_sources() -> list[str]:
    """The .py modules that have a .pxd beside them (relative to this file)."""
    return sorted(
        str(pxd.with_suffix(".py").relative_to(HERE))
        for pxd in (SOURCE_ROOT / "ioreactor").rglob("*.pxd")
        if pxd.with_suffix(".py").exists()
    )


def _extensions() -> list[Extension]:
    if os.environ.get("IOREACTOR_NO_EXTENSIONS", "") not in ("", "0"):
        return []
    try:
        from Cython.Build import cythonize
    except ImportError:
        _warn("Cython is not available")
        return []
    try:
        extensions: list[Extension] = cythonize(
            _compiled_sources(),
            language_level=3,
            compiler_directives={
                # Types come from the .pxd files only: an annotation such as ``data: bytes``
                # must not make the compiled build stricter than the pure one.
                "annotation_typing": False,
                # Docstrings stay as written (the functions carry their signatures
                # anyway: inspect.signature reads them, Cython's binding is on).
                "embedsignature": False,
            },
            quiet=True,
            nthreads=os.cpu_count() or 1,
        )
    except Exception as exc:  # Cython could not translate a module
        _warn(f"Cython failed ({exc})")
        return []
    for ext in extensions:
        ext.extra_compile_args = ["-O2"]
    return extensions


class OptionalBuildExt(build_ext):
    """A compiled module that cannot be built leaves the whole build pure, with one
    warning: the compiled modules use each other's C types, so it is all or none.
    The C compiler runs on every CPU (``-j``) unless told otherwise."""

    def finalize_options(self) -> None:
        super().finalize_options()
        if not self.parallel:
            self.parallel = os.cpu_count() or 1

    def run(self) -> None:
        self.failures: list[str] = []
        try:
            super().run()
        except Exception as exc:  # no C compiler at all
            self.failures.append(str(exc))
        if self.failures:
            _warn(f"cannot build the compiled modules ({self.failures[0]})")
            for ext in self.extensions:
                Path(self.get_ext_fullpath(ext.name)).unlink(missing_ok=True)

    def build_extension(self, ext: Any) -> None:
        try:
            super().build_extension(ext)
        except Exception as exc:
            self.failures.append(f"{ext.name}: {exc}")


setup(ext_modules=_extensions(), cmdclass={"build_ext": OptionalBuildExt})
