"""The completion-mode loop and how it is selected: by name or sized, the base loop's
services on it, the one io_uring_enter per iteration, and closing it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time

import pytest

from ioreactor.loop.backends import new_loop
from ioreactor.loop.event_loop import EventLoop
from ioreactor.loop.poller import READ
from ioreactor.loop.uring import LOOP_NAME
from ioreactor.loop.uring import ring as ring_mod
from ioreactor.loop.uring.completion import CompletionPoller
from ioreactor.loop.uring.poller import UringPoller
from ioreactor.net.handlers import Handler
from ioreactor.net.uring.connection import UringConnection
from support.uring import UringLoopThread, make_loop

pytestmark = pytest.mark.timeout(60)


def test_the_loop_is_the_base_loop_in_completion_mode() -> None:
    loop = make_loop()
    plain = EventLoop("epoll")
    try:
        assert type(loop) is EventLoop and loop.completion_mode
        assert isinstance(loop.poller, CompletionPoller)
        assert loop.poller.name == LOOP_NAME == "uring"
        assert not plain.completion_mode
    finally:
        loop.close()
        plain.close()


def test_backend_names_build_the_io_uring_loops() -> None:
    default = new_loop(name="d")
    try:
        assert type(default) is EventLoop and default.poller.name == "epoll"
    finally:
        default.close()
    try:
        readiness = new_loop("uring-poll")
        completion = new_loop(LOOP_NAME, buffers=64)
        by_name = EventLoop(LOOP_NAME)
    except ring_mod.UringUnavailable as exc:
        pytest.skip(f"io_uring unavailable here: {exc.strerror}")
    try:
        assert isinstance(readiness.poller, UringPoller) and not readiness.completion_mode
        assert isinstance(completion.poller, CompletionPoller) and completion.completion_mode
        assert completion.poller.buffers.nbufs == 64
        assert isinstance(by_name.poller, CompletionPoller) and by_name.completion_mode
    finally:
        readiness.close()
        completion.close()
        by_name.close()


def test_eventloop_takes_the_uring_name_in_a_fresh_interpreter() -> None:
    """``EventLoop("uring")`` needs nothing imported or registered first."""
    code = (
        "from ioreactor.loop.event_loop import EventLoop\n"
        "from ioreactor.loop.uring.ring import UringUnavailable\n"
        "try:\n"
        "    loop = EventLoop('uring')\n"
        "except UringUnavailable as exc:\n"
        "    print('unavailable', exc.strerror)\n"
        "    raise SystemExit\n"
        "loop.run_once(0)\n"
        "print(loop.poller.name, loop.completion_mode)\n"
        "loop.close()\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    if out.stdout.startswith("unavailable"):
        pytest.skip(f"io_uring unavailable here: {out.stdout}")
    assert out.stdout.split() == ["uring", "True"]


def test_timers_ready_queue_and_cross_thread_wakeup_work_as_on_epoll() -> None:
    with UringLoopThread() as lt:
        fired = threading.Event()
        order: list[str] = []
        lt.call(lambda: lt.loop.call_later(0.05, fired.set))
        assert fired.wait(5)
        time.sleep(0.05)  # the loop is now blocked in io_uring_enter, no timer due
        woke = threading.Event()
        lt.loop.call_soon_threadsafe(woke.set)
        assert woke.wait(5)

        def queue() -> None:
            lt.loop.call_soon(order.append, "soon")
            lt.loop.call_later(0, order.append, "timer")

        lt.call(queue)
        assert lt.wait_until(lambda: len(order) == 2, 5)


def test_readiness_watchers_and_completions_share_one_enter_per_iteration(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A watched pipe (readiness) and a connection's receive (completion) are both
    served by the same iteration, whose only io_uring_enter submitted and reaped both."""
    loop = make_loop()
    r, w = os.pipe()
    a, b = socket.socketpair()
    seen: list[str] = []

    class Note(Handler):
        def on_message(self, conn: UringConnection, buffer: object) -> None:
            seen.append("recv")
            conn.input.retrieve_all()

    def on_pipe(events: int) -> None:
        seen.append("pipe")
        os.read(r, 10)

    conn = UringConnection(loop, a, "pair", Note())
    try:
        conn.start()
        loop.watch(r, READ, on_pipe)
        loop.run_once(0)  # submits the receive and the poll
        enters: list[int] = []
        real = ring_mod._syscall

        def counting(nr: int, *args: int) -> int:
            if nr == ring_mod.NR_IO_URING_ENTER:
                enters.append(nr)
            return real(nr, *args)

        monkeypatch.setattr(ring_mod, "_syscall", counting)
        os.write(w, b"x")
        b.send(b"data")
        time.sleep(0.05)
        loop.run_once(1.0)
        assert sorted(seen) == ["pipe", "recv"]
        assert len(enters) == 1
    finally:
        monkeypatch.undo()
        conn.force_close()
        loop.unwatch(r)
        loop.run_once(0)
        loop.close()
        for fd in (r, w):
            os.close(fd)
        b.close()


def test_closing_from_the_loop_thread_unmaps_the_buffers() -> None:
    kept = len(ring_mod._UNSAFE_TO_UNMAP)
    with UringLoopThread():
        pass  # UringLoopThread closes the loop on its own thread
    assert len(ring_mod._UNSAFE_TO_UNMAP) == kept


def test_closing_from_another_thread_keeps_buffer_memory_mapped() -> None:
    """The ring is bound to the thread that ran it: another thread cannot cancel the
    in-flight receives, so their buffers are deliberately left mapped."""
    loop = make_loop()
    server = socket.create_server(("127.0.0.1", 0))
    a = socket.create_connection(server.getsockname())
    b, _ = server.accept()
    conn = UringConnection(loop, b, "peer", Handler())
    t = threading.Thread(target=lambda: (conn.start(), loop.run_once(0)))
    t.start()
    t.join(5)
    kept = len(ring_mod._UNSAFE_TO_UNMAP)
    loop.close()  # from this thread: EEXIST inside, reported by keeping the mapping
    assert len(ring_mod._UNSAFE_TO_UNMAP) == kept + 1
    for s in (a, b, server):
        s.close()
