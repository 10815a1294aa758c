"""Every readiness poller: register / modify / unregister / poll on real sockets.

The backends (select, poll, epoll, epoll-et, and io_uring's uring-poll / uring-poll-et
where the kernel allows) must agree on one vocabulary (epoll bit values), on what
"ready" means, and on the two differences that matter: select's FD_SETSIZE limit, and
an edge-triggered poller reporting a readiness change once (so a reader must drain
until EAGAIN). What is particular to io_uring's pollers is in tests/loop/uring.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from ioreactor.loop import poller as poller_mod
from ioreactor.loop.poller import (
    ERROR,
    FD_SETSIZE,
    HUP,
    READ,
    WRITE,
    Poller,
    available_pollers,
    best_poller_name,
    create_poller,
    register_backend,
)
from ioreactor.loop.uring.ring import UringUnavailable

pytestmark = pytest.mark.timeout(30)


#: The readiness pollers: every backend but the completion loop (tests/loop/uring).
READINESS = [n for n in available_pollers() if n != "uring"]
EDGE_TRIGGERED = [n for n in READINESS if n.endswith("-et")]


def make(name: str) -> Poller:
    """The poller called ``name``, or skip where io_uring is unavailable."""
    try:
        return create_poller(name)
    except UringUnavailable as exc:
        pytest.skip(f"io_uring unavailable here: {exc.strerror}")


@pytest.fixture(params=READINESS)
def poller(request: pytest.FixtureRequest) -> Iterator[Poller]:
    """Each readiness poller, one test run per backend."""
    p = make(request.param)
    yield p
    p.close()


def ready(p: Poller, timeout: float = 0.0) -> dict[int, int]:
    return dict(p.poll(timeout))


def test_linux_offers_every_backend() -> None:
    names = available_pollers()
    for name in ("select", "poll", "epoll", "epoll-et"):
        assert name in names
    assert best_poller_name() == "epoll"
    assert create_poller().name == "epoll"


def test_unknown_backend_is_refused_with_the_choices() -> None:
    with pytest.raises(ValueError, match=r"unknown poller 'nope'.*epoll"):
        create_poller("nope")


def test_register_backend_makes_a_name_selectable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(poller_mod._FACTORIES, "custom", poller_mod.PollPoller)
    assert "custom" in available_pollers()
    assert create_poller("custom").name == "poll"
    monkeypatch.delitem(poller_mod._FACTORIES, "custom")
    register_backend("custom2", poller_mod.SelectPoller)
    try:
        assert isinstance(create_poller("custom2"), poller_mod.SelectPoller)
    finally:
        del poller_mod._FACTORIES["custom2"]


def test_backend_reports_its_name_and_trigger_mode(
    request: pytest.FixtureRequest, poller: Poller
) -> None:
    assert poller.name == request.node.callspec.params["poller"]
    assert poller.edge_triggered == poller.name.endswith("-et")
    if poller.name.startswith(("epoll", "uring")):
        assert poller.fileno() >= 0
    else:
        assert poller.fileno() == -1


def test_read_readiness_follows_the_data(
    poller: Poller, pair: tuple[socket.socket, socket.socket]
) -> None:
    a, b = pair
    poller.register(a.fileno(), READ)
    assert ready(poller) == {}
    b.send(b"x")
    events = ready(poller, 5.0)
    assert set(events) == {a.fileno()}
    assert events[a.fileno()] & READ
    assert not events[a.fileno()] & WRITE
    assert a.recv(10) == b"x"
    assert ready(poller) == {}


def test_write_readiness_and_modify(
    poller: Poller, pair: tuple[socket.socket, socket.socket]
) -> None:
    a, b = pair
    fd = a.fileno()
    poller.register(fd, WRITE)
    events = ready(poller, 5.0)
    assert events[fd] & WRITE and not events[fd] & READ
    if not poller.edge_triggered:
        assert ready(poller, 5.0)[fd] & WRITE, "still writable: reported again"
    poller.modify(fd, READ)
    assert ready(poller) == {}, "WRITE interest dropped, nothing to read yet"
    b.send(b"y")
    assert ready(poller, 5.0)[fd] & READ
    poller.modify(fd, READ | WRITE)
    assert ready(poller, 5.0)[fd] & (READ | WRITE) == READ | WRITE
    poller.modify(fd, 0)
    assert ready(poller) == {}


def test_unregister_stops_reports(
    poller: Poller, pair: tuple[socket.socket, socket.socket]
) -> None:
    a, b = pair
    poller.register(a.fileno(), READ | WRITE)
    b.send(b"z")
    assert a.fileno() in ready(poller, 5.0)
    poller.unregister(a.fileno())
    assert ready(poller) == {}


def test_modify_replaces_the_interest_a_poll_already_waits_with(
    poller: Poller, pair: tuple[socket.socket, socket.socket]
) -> None:
    a, b = pair
    fd = a.fileno()
    poller.register(fd, READ)
    assert ready(poller) == {}  # io_uring: the READ poll is now armed in the kernel
    poller.modify(fd, WRITE)
    b.send(b"data")  # would fire the old READ interest
    assert ready(poller, 5.0) == {fd: WRITE}


def test_readiness_that_arrives_as_the_fd_is_unregistered_is_dropped(
    poller: Poller, pair: tuple[socket.socket, socket.socket]
) -> None:
    a, b = pair
    fd = a.fileno()
    poller.register(fd, READ)
    assert ready(poller) == {}
    b.send(b"late")  # readiness arrives (io_uring: the armed poll completes)...
    poller.unregister(fd)  # ...after the loop has let go of the fd
    assert ready(poller, 0.05) == {}


def test_several_fds_in_one_poll(poller: Poller) -> None:
    pairs = [socket.socketpair() for _ in range(5)]
    try:
        for a, _ in pairs:
            poller.register(a.fileno(), READ)
        for _, b in pairs[1::2]:
            b.send(b"!")
        deadline = time.monotonic() + 5
        seen: dict[int, int] = {}
        while len(seen) < 2 and time.monotonic() < deadline:
            seen.update(ready(poller, 1.0))
        assert set(seen) == {pairs[1][0].fileno(), pairs[3][0].fileno()}
    finally:
        for a, b in pairs:
            a.close()
            b.close()


def test_peer_close_is_reported_as_readable(
    poller: Poller, pair: tuple[socket.socket, socket.socket]
) -> None:
    a, b = pair
    poller.register(a.fileno(), READ)
    b.close()
    events = ready(poller, 5.0)
    assert events[a.fileno()] & READ
    if poller.name != "select":  # select has no word for a hangup
        assert events[a.fileno()] & HUP
    assert a.recv(10) == b""


def test_tcp_reset_is_reported(poller: Poller) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(listener.getsockname())
    server, _ = listener.accept()
    try:
        server.setblocking(False)
        poller.register(server.fileno(), READ)
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        client.close()
        events = ready(poller, 5.0)
        assert events[server.fileno()] & (READ | ERROR | HUP)
        with pytest.raises(ConnectionResetError):
            server.recv(10)
    finally:
        server.close()
        listener.close()


def test_poll_timeout_sleeps_and_none_waits_for_readiness(
    poller: Poller, pair: tuple[socket.socket, socket.socket]
) -> None:
    a, b = pair
    poller.register(a.fileno(), READ)
    start = time.monotonic()
    assert poller.poll(0.05) == []
    assert time.monotonic() - start >= 0.04
    timer = threading.Timer(0.05, b.send, args=(b"late",))
    timer.start()
    try:
        events = dict(poller.poll(None))
    finally:
        timer.join()
    assert events[a.fileno()] & READ


def test_poll_with_nothing_registered_is_a_sleep(poller: Poller) -> None:
    start = time.monotonic()
    assert poller.poll(0.03) == []
    assert time.monotonic() - start >= 0.02


def test_fd_closed_while_registered_is_reported_once_then_forgotten(
    poller: Poller, caplog: pytest.LogCaptureFixture
) -> None:
    """An owner that closes before unregistering: select() would fail with EBADF on
    every call and poll() report POLLNVAL forever; each backend must neither raise nor
    spin. select/poll report it once as ERROR|HUP (so the owner cleans up) and log it;
    io_uring's pollers report it once as ERROR; epoll drops a closed fd by itself."""
    a, b = socket.socketpair()
    other, peer = socket.socketpair()
    try:
        poller.register(a.fileno(), READ)
        poller.register(other.fileno(), READ)
        b.send(b"x")
        peer.send(b"y")
        closed = a.fileno()
        a.close()
        first = ready(poller, 0.5)
        if poller.name.startswith("epoll"):
            assert closed not in first
        elif poller.name.startswith("uring"):
            assert first[closed] == ERROR  # the armed poll completes with EBADF
        else:
            assert first[closed] == ERROR | HUP
            assert any(f"fd {closed} was closed" in r.getMessage() for r in caplog.records)
        assert first[other.fileno()] & READ  # the other fds are still served
        if not poller.edge_triggered:
            assert ready(poller, 0.05) == {other.fileno(): READ}  # reported once only
        poller.unregister(other.fileno())
        assert ready(poller, 0.05) == {}
    finally:
        for sock in (a, b, other, peer):
            sock.close()


def test_select_refuses_fds_beyond_fd_setsize(pair: tuple[socket.socket, socket.socket]) -> None:
    high = os.dup2(pair[0].fileno(), FD_SETSIZE + 10)
    try:
        p = create_poller("select")
        with pytest.raises(ValueError, match=r"fd 1034 is >= FD_SETSIZE \(1024\).*poll"):
            p.register(high, READ)
        for name in ("poll", "epoll"):
            other = create_poller(name)
            other.register(high, WRITE)
            assert dict(other.poll(5.0))[high] & WRITE
            other.close()
    finally:
        os.close(high)


@pytest.mark.parametrize("name", ["epoll", "uring-poll", *EDGE_TRIGGERED])
def test_partial_read_renotified_only_when_level_triggered(
    name: str, pair: tuple[socket.socket, socket.socket]
) -> None:
    """The drain-until-EAGAIN rule: on ET, a reader that leaves data behind hears nothing."""
    a, b = pair
    p = make(name)
    try:
        p.register(a.fileno(), READ)
        b.send(b"0123456789")
        assert ready(p, 5.0)[a.fileno()] & READ
        assert a.recv(3) == b"012"  # leave 7 bytes unread
        again = ready(p, 0.05)
        if p.edge_triggered:
            assert again == {}, "an edge-triggered poller must not report the same data twice"
        else:
            assert again[a.fileno()] & READ
        b.send(b"more")  # a new edge: reported on both
        assert ready(p, 5.0)[a.fileno()] & READ
        assert a.recv(100) == b"3456789more"
        with pytest.raises(BlockingIOError):
            a.recv(100)
        assert ready(p, 0.05) == {}
    finally:
        p.close()


@pytest.mark.parametrize("name", EDGE_TRIGGERED)
def test_edge_triggered_modify_rearms(name: str, pair: tuple[socket.socket, socket.socket]) -> None:
    """Re-enabling READ on ET (reading resumed) reports data that arrived meanwhile."""
    a, b = pair
    p = make(name)
    try:
        p.register(a.fileno(), 0)
        b.send(b"while paused")
        assert ready(p, 0.05) == {}
        p.modify(a.fileno(), READ)
        assert ready(p, 5.0)[a.fileno()] & READ
    finally:
        p.close()
