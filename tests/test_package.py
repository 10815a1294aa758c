"""The top-level package: what it exports is what its docstring lists, every public
handler type is there, and ``__version__`` is the installed distribution's."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import pytest

import ioreactor
from ioreactor.build import COMPILED_MODULES
from ioreactor.codec import FrameHandler
from ioreactor.heartbeat import HeartbeatHandler
from ioreactor.idle import IdleStateHandler
from ioreactor.net.handlers import DatagramHandler, Handler
from support.imports import modules_loaded_by, third_party


def test_the_docstring_names_every_export() -> None:
    doc = ioreactor.__doc__ or ""
    for name in ioreactor.__all__:
        assert name in doc, f"{name} is exported but not described"
        assert hasattr(ioreactor, name)


def test_every_public_handler_type_is_exported_from_the_top() -> None:
    from ioreactor import DatagramHandler as TopDatagram
    from ioreactor import FrameHandler as TopFrame
    from ioreactor import Handler as TopHandler

    assert (TopHandler, TopDatagram, TopFrame) == (Handler, DatagramHandler, FrameHandler)
    assert ioreactor.IdleStateHandler is IdleStateHandler
    assert ioreactor.HeartbeatHandler is HeartbeatHandler


def test_version_is_single_sourced() -> None:
    assert ioreactor.__version__ == importlib.metadata.version("ioreactor")
    from ioreactor import __version__

    assert __version__ == ioreactor.__version__
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        ioreactor.nope  # noqa: B018


def test_the_pure_build_replaces_every_compiled_module() -> None:
    """``IOREACTOR_NO_EXTENSIONS=1`` loads the source of every module that has a .pxd:
    the compiled modules use each other's C types, so one left compiled among pure ones
    misreads the objects they hand it."""
    root = Path(ioreactor.__file__).parent
    with_pxd = {
        ".".join(("ioreactor", *pxd.relative_to(root).with_suffix("").parts))
        for pxd in root.rglob("*.pxd")
        if pxd.with_suffix(".py").exists()
    }
    assert with_pxd == set(COMPILED_MODULES)


def test_importing_the_package_loads_no_io_uring_no_tools_no_metadata() -> None:
    loaded = modules_loaded_by("import ioreactor")
    unwanted = {"ctypes", "ioreactor.loop.uring", "ioreactor_tools", "argparse", "rich"}
    assert not loaded & (unwanted | {"importlib.metadata"})


#: Imports every module of the framework (``python -m ioreactor``'s ``__main__`` runs the
#: command line instead of defining anything).
IMPORT_EVERY_MODULE = """
import importlib, pkgutil, ioreactor
for info in pkgutil.walk_packages(ioreactor.__path__, "ioreactor."):
    if not info.name.endswith(".__main__"):
        importlib.import_module(info.name)
"""


@pytest.mark.parametrize("build", ["compiled where built", "pure"])
def test_the_framework_needs_no_third_party_module_but_httptools(build: str) -> None:
    """What ``pip install .`` without extras gives: every framework module imports in an
    interpreter where importing any package but httptools fails (Cython, the tools'
    rich, matplotlib, uvloop are installed here), and httptools is all it loads."""
    env = {"IOREACTOR_NO_EXTENSIONS": "1"} if build == "pure" else None
    loaded = modules_loaded_by(IMPORT_EVERY_MODULE, env, installed={"httptools"})
    assert "ioreactor.net.connection" in loaded and "ioreactor.cli" in loaded
    assert third_party(loaded) == {"httptools"}


def test_the_distribution_requires_httptools_only_without_extras() -> None:
    requires = importlib.metadata.requires("ioreactor") or []
    plain = [r for r in requires if "extra ==" not in r]
    assert [r.split(">")[0].split("=")[0].split("<")[0].strip() for r in plain] == ["httptools"]
