"""What is particular to UringPoller (the contract every readiness poller shares, its
level- and edge-triggered modes included, is tested in tests/loop/test_poller.py): armed
polls replaced or dropped, fd numbers reused, one io_uring_enter per poll(), bursts
bigger than the rings, and the real EventLoop/TcpServer on top."""

from __future__ import annotations

import ctypes
import errno
import os
import random
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from ioreactor.loop import poller as poller_mod
from ioreactor.loop.event_loop import EventLoop
from ioreactor.loop.poller import HUP, READ, WRITE
from ioreactor.loop.uring import ring as ring_mod
from ioreactor.loop.uring.poller import UringPoller
from ioreactor.loop.uring.ring import UringUnavailable
from ioreactor.net.buffer import Buffer
from ioreactor.net.connection import TcpConnection
from ioreactor.net.handlers import Handler
from ioreactor.net.server import TcpServer


def _make(edge_triggered: bool = False) -> UringPoller:
    try:
        return UringPoller(edge_triggered=edge_triggered, entries=256)
    except UringUnavailable as exc:
        pytest.skip(f"io_uring unavailable here: {exc.strerror}")


@pytest.fixture
def poller() -> Iterator[UringPoller]:
    p = _make()
    yield p
    p.close()


def test_reused_fd_number_gets_only_its_own_events(poller: UringPoller) -> None:
    a, b = socket.socketpair()
    c, d = socket.socketpair()
    with b, c, d:
        fd = a.fileno()
        poller.register(fd, READ)
        assert poller.poll(0) == []
        b.send(b"old")
        poller.unregister(fd)
        os.dup2(c.fileno(), fd)  # the number now names a fresh, idle socket
        a.detach()
        try:
            poller.register(fd, READ)
            assert poller.poll(0.05) == []
            d.send(b"new")
            assert poller.poll(1.0) == [(fd, READ)]
        finally:
            os.close(fd)


def test_hangup_reported_even_with_empty_interest(
    poller: UringPoller, pair: tuple[socket.socket, socket.socket]
) -> None:
    a, b = pair
    poller.register(a.fileno(), 0)
    assert poller.poll(0) == []
    b.close()
    [(fd, mask)] = poller.poll(1.0)
    assert fd == a.fileno() and mask & HUP


def test_contract_errors(poller: UringPoller) -> None:
    poller.register(5, READ)
    with pytest.raises(FileExistsError):
        poller.register(5, READ)
    poller.unregister(5)
    with pytest.raises(FileNotFoundError):
        poller.unregister(5)
    with pytest.raises(FileNotFoundError):
        poller.modify(5, READ)
    with pytest.raises(ValueError):
        poller.register(-1, READ)


def test_one_io_uring_enter_per_poll(monkeypatch: pytest.MonkeyPatch, poller: UringPoller) -> None:
    pairs = [socket.socketpair() for _ in range(40)]
    calls: list[int] = []
    real = ring_mod._syscall

    def counting(nr: int, *args: int) -> int:
        calls.append(nr)
        return int(real(nr, *args))

    try:
        monkeypatch.setattr(ring_mod, "_syscall", counting)
        for a, _ in pairs:
            poller.register(a.fileno(), READ | WRITE)
        poller.poll(0)  # 40 arms submitted, 40 completions (writable) reaped
        for i, (a, _) in enumerate(pairs):
            poller.modify(a.fileno(), READ if i % 2 else READ | WRITE)
        for _, b in pairs:
            b.send(b"!")
        calls.clear()
        events = dict(poller.poll(1.0))
        assert calls.count(ring_mod.NR_IO_URING_ENTER) == 1
        assert len(events) == 40
        assert all(events[a.fileno()] & READ for a, _ in pairs)
        # Interest changes and re-arms go out with the waiting call, not on their own.
        assert [nr for nr in calls if nr != ring_mod.NR_IO_URING_REGISTER] == [
            ring_mod.NR_IO_URING_ENTER
        ]
    finally:
        for a, b in pairs:
            a.close()
            b.close()


def test_more_fds_than_sq_and_cq_slots_lose_no_event() -> None:
    """A burst bigger than the rings: extra enters to make SQ room, and CQEs parked in
    the kernel's overflow list (FEAT_NODROP) come out with the next poll()."""
    try:
        poller = UringPoller(entries=8)  # SQ 8, CQ 16
    except UringUnavailable as exc:
        pytest.skip(f"io_uring unavailable here: {exc.strerror}")
    pairs = [socket.socketpair() for _ in range(40)]
    try:
        for a, b in pairs:
            poller.register(a.fileno(), READ)
            b.send(b"!")
        seen: set[int] = set()
        for _ in range(20):
            seen.update(fd for fd, mask in poller.poll(0.2) if mask & READ)
            if len(seen) == len(pairs):
                break
        assert seen == {a.fileno() for a, _ in pairs}
    finally:
        poller.close()
        for a, b in pairs:
            a.close()
            b.close()


def _enosys(nr: int, *args: int) -> int:
    ctypes.set_errno(errno.ENOSYS)
    return -1


def test_unavailable_io_uring_surfaces_from_the_poller(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ring_mod, "_syscall", _enosys)
    with pytest.raises(UringUnavailable, match="ENOSYS"):
        UringPoller()


# -- the real loop and server on top ----------------------------------------------------------


def test_loop_built_here_runs_there_and_wakes_cross_thread() -> None:
    loop = EventLoop(_make())
    woke = threading.Event()
    t = threading.Thread(target=loop.run)
    t.start()
    try:
        time.sleep(0.05)  # the loop is now blocked in io_uring_enter, no timer set
        loop.call_soon_threadsafe(woke.set)
        assert woke.wait(2.0)
    finally:
        loop.stop()
        t.join(5)
    assert not t.is_alive()
    loop.close()


class _Echo(Handler):
    def on_message(self, conn: TcpConnection, buffer: Buffer) -> None:
        conn.send(buffer.read_all())


@pytest.mark.parametrize("edge_triggered", [False, True], ids=["uring-poll", "uring-poll-et"])
def test_tcp_echo_server_unchanged_over_uring(edge_triggered: bool) -> None:
    loop = EventLoop(_make(edge_triggered))
    server = TcpServer(loop, ("127.0.0.1", 0), _Echo()).start()
    port = server.port
    t = threading.Thread(target=loop.run)
    t.start()
    rng = random.Random(3)
    try:
        clients = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(8)]
        for round_ in range(5):
            sent = {c: rng.randbytes(rng.choice((1, 100, 5000, 70_000))) for c in clients}
            for c, data in sent.items():
                c.sendall(data)
            for c, data in sent.items():
                got = bytearray()
                while len(got) < len(data):
                    chunk = c.recv(1 << 20)
                    assert chunk, f"server closed in round {round_}"
                    got += chunk
                assert got == data
        for c in clients:
            c.close()
    finally:
        loop.call_soon_threadsafe(server.close)
        loop.stop()
        t.join(5)
        loop.close()
    assert not t.is_alive()


def test_uring_names_are_selectable_and_epoll_stays_the_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert poller_mod.best_poller_name() == "epoll"
    assert {"uring-poll", "uring-poll-et"} <= set(poller_mod.available_pollers())
    for name in ("uring-poll", "uring-poll-et"):
        try:
            p = poller_mod.create_poller(name)
        except UringUnavailable as exc:
            pytest.skip(f"io_uring unavailable here: {exc.strerror}")
        assert isinstance(p, UringPoller) and p.name == name
        p.close()
    monkeypatch.setattr(ring_mod, "_syscall", _enosys)
    with pytest.raises(UringUnavailable, match="ENOSYS"):
        poller_mod.create_poller("uring-poll")
