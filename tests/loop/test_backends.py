"""Choosing a backend by name: pollers under EventLoop, or the io_uring completion loop."""

from __future__ import annotations

import subprocess
import sys

import pytest

from ioreactor.loop.backends import URING_BACKENDS, backend_names, new_loop
from ioreactor.loop.event_loop import EventLoop
from ioreactor.loop.poller import available_pollers


def test_backend_names_are_the_pollers_then_io_uring() -> None:
    names = backend_names()
    assert names[: len(available_pollers())] == available_pollers()
    assert names[0] == "epoll"  # the default stays epoll
    assert set(URING_BACKENDS) <= set(names)


@pytest.mark.parametrize("name", available_pollers())
def test_poller_names_build_a_plain_loop(name: str) -> None:
    loop = new_loop(name, name="t")
    try:
        assert type(loop) is EventLoop and loop.poller.name == name and loop.name == "t"
    finally:
        loop.close()


def test_unknown_backend_names_the_choices() -> None:
    with pytest.raises(ValueError, match=r"unknown backend 'kqueue2'.*epoll"):
        new_loop("kqueue2")


@pytest.mark.parametrize("name", URING_BACKENDS)
def test_uring_names_build_their_loop_or_say_why_not(name: str) -> None:
    from ioreactor.loop.uring import UringEventLoop, UringPoller, UringUnavailable

    try:
        loop = new_loop(name)
    except UringUnavailable as exc:
        pytest.skip(f"io_uring unavailable here: {exc}")
    try:
        if name == "uring":
            assert isinstance(loop, UringEventLoop)
        else:
            assert isinstance(loop.poller, UringPoller)
            assert loop.poller.edge_triggered == name.endswith("-et")
    finally:
        loop.close()


def test_plain_programs_do_not_load_io_uring() -> None:
    code = (
        "import sys; from ioreactor.loop.backends import new_loop; new_loop().close(); "
        "print('ioreactor.loop.uring' in sys.modules, 'ctypes' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
