"""What a program loads: run code in a fresh interpreter and read its ``sys.modules``.

A module is only "not loaded" if a process that never imported it says so: pytest's own
process has imported half the world, so the question is asked of a new one. With
``installed``, that process also behaves as if only those packages (besides the
standard library and ioreactor) were installed: importing any other one fails, as it
would in a fresh ``pip install .`` -- so an optional import takes its fallback.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Collection, Mapping

#: Modules of Cython's runtime that compiled extension modules (this project's compiled
#: build, httptools) register: part of those modules, not packages of their own.
CYTHON_RUNTIME_PREFIXES = ("_cython_", "cython_runtime")

_PROLOGUE = """
import sys as _s
_BARE = set(_s.modules)
_INSTALLED = {installed!r}
if _INSTALLED is not None:
    class _OnlyInstalled:
        def find_spec(self, name, path=None, target=None):
            top = name.partition(".")[0]
            if top in _s.stdlib_module_names or top in _INSTALLED or top == "ioreactor":
                return None
            raise ModuleNotFoundError(f"No module named {{name!r}} (not installed)", name=name)
    _s.meta_path.insert(0, _OnlyInstalled())
"""
_REPORT = "\nimport json as _j\nprint(_j.dumps(sorted(set(_s.modules) - _BARE)))\n"


def modules_loaded_by(
    code: str,
    env: Mapping[str, str] | None = None,
    *,
    installed: Collection[str] | None = None,
) -> set[str]:
    """The modules ``python -c code`` has loaded beyond what a bare interpreter (with
    this environment's site hooks) has loaded by itself. ``env`` is added to ours;
    ``installed``: the only third-party packages the code may import (None: any)."""
    allowed = None if installed is None else sorted(installed)
    program = _PROLOGUE.format(installed=allowed) + code + _REPORT
    done = subprocess.run(
        [sys.executable, "-c", program],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=None if env is None else {**os.environ, **env},
    )
    assert done.returncode == 0, done.stderr
    loaded: list[str] = json.loads(done.stdout.splitlines()[-1])
    return set(loaded)


def third_party(modules: set[str]) -> set[str]:
    """The top-level packages among ``modules`` that are neither the standard library,
    ioreactor's own, nor Cython's runtime."""
    tops = {name.partition(".")[0] for name in modules}
    return {
        top
        for top in tops - set(sys.stdlib_module_names)
        if top not in ("ioreactor", "__main__") and not top.startswith(CYTHON_RUNTIME_PREFIXES)
    }
