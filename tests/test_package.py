"""The top-level package: what it exports is what its docstring lists, every public
handler type is there, and ``__version__`` is the installed distribution's."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys

import pytest

import ioreactor
from ioreactor.codec import FrameHandler
from ioreactor.heartbeat import HeartbeatHandler
from ioreactor.idle import IdleStateHandler
from ioreactor.net.handlers import DatagramHandler, Handler


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


def test_importing_the_package_loads_no_io_uring_no_tools_no_metadata() -> None:
    code = (
        "import sys, ioreactor\n"
        "print(sorted(m for m in ('ctypes', 'ioreactor.loop.uring', 'ioreactor_tools', "
        "'argparse', 'rich', 'importlib.metadata') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
