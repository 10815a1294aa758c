"""Choosing a backend by name: every poller, io_uring's included, under one EventLoop."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from ioreactor.loop.backends import new_loop
from ioreactor.loop.event_loop import EventLoop
from ioreactor.loop.poller import URING_POLLERS, available_pollers
from support.imports import modules_loaded_by


def test_one_list_of_names_the_readiness_pollers_then_io_uring() -> None:
    names = available_pollers()
    assert names[0] == "epoll"  # the default stays epoll
    assert names[-len(URING_POLLERS) :] == list(URING_POLLERS)
    assert set(URING_POLLERS) == {"uring", "uring-poll", "uring-poll-et"}


@pytest.mark.parametrize("name", [n for n in available_pollers() if n not in URING_POLLERS])
def test_poller_names_build_a_plain_loop(name: str) -> None:
    loop = new_loop(name, name="t")
    try:
        assert type(loop) is EventLoop and loop.poller.name == name and loop.name == "t"
        assert not loop.completion_mode
    finally:
        loop.close()


def test_unknown_backend_names_the_choices() -> None:
    with pytest.raises(ValueError, match=r"unknown poller 'kqueue2'.*epoll.*uring"):
        new_loop("kqueue2")
    with pytest.raises(ValueError, match=r"unknown poller 'kqueue2'.*epoll.*uring"):
        EventLoop("kqueue2")


@pytest.mark.parametrize("name", URING_POLLERS)
@pytest.mark.parametrize("build", [new_loop, EventLoop])
def test_uring_names_build_their_loop_or_say_why_not(
    name: str, build: Callable[[str], EventLoop]
) -> None:
    from ioreactor.loop.uring import CompletionPoller, UringPoller, UringUnavailable

    try:
        loop = build(name)
    except UringUnavailable as exc:
        pytest.skip(f"io_uring unavailable here: {exc}")
    try:
        assert type(loop) is EventLoop
        if name == "uring":
            assert isinstance(loop.poller, CompletionPoller) and loop.completion_mode
        else:
            assert isinstance(loop.poller, UringPoller) and not loop.completion_mode
            assert loop.poller.edge_triggered == name.endswith("-et")
    finally:
        loop.close()


def test_plain_programs_do_not_load_io_uring() -> None:
    loaded = modules_loaded_by(
        "from ioreactor.loop.backends import new_loop; new_loop().close(); "
        "import ioreactor; ioreactor.available_pollers()"
    )
    assert "ioreactor.loop.backends" in loaded
    assert "ioreactor.loop.uring" not in loaded and "ctypes" not in loaded
