"""FileSender: os.sendfile driven by the loop after the connection's own output drains."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from ioreactor.http.sendfile import FileSender
from ioreactor.loop.backends import new_loop
from ioreactor.loop.event_loop import EventLoop
from ioreactor.net.handlers import Handler
from ioreactor.testing import connection_pair, open_fds, run_until

SIZE = 4 * 1024 * 1024 + 3


@pytest.fixture
def payload(tmp_path: Path) -> Path:
    path = tmp_path / "payload"
    path.write_bytes(os.urandom(SIZE))
    return path


def test_head_then_whole_file_then_more_output(poller_name: str, payload: Path) -> None:
    loop = new_loop(poller_name)
    conn, client = connection_pair(loop, Handler())
    received = bytearray()

    def reader() -> None:  # a slow reader: the socket fills and the sender must wait
        client.settimeout(30)
        while len(received) < SIZE + 10:
            chunk = client.recv(65536)
            if not chunk:
                return
            received.extend(chunk)

    thread = threading.Thread(target=reader)
    thread.start()
    done: list[bool] = []
    fd = os.open(payload, os.O_RDONLY)
    try:
        conn.send(b"HEAD:")
        sender = FileSender(conn, fd, 0, SIZE, done.append)
        sender.start()
        run_until(loop, lambda: bool(done))
        assert done == [True] and not sender.active
        conn.send(b"TAIL!")
        run_until(loop, lambda: conn.output_size == 0)
        thread.join(30)
        assert bytes(received) == b"HEAD:" + payload.read_bytes() + b"TAIL!"
    finally:
        os.close(fd)
        conn.force_close()
        client.close()
        loop.close()


def test_range_of_a_file(payload: Path) -> None:
    loop = EventLoop()
    conn, client = connection_pair(loop, Handler())
    done: list[bool] = []
    fd = os.open(payload, os.O_RDONLY)
    try:
        FileSender(conn, fd, 1000, 5000, done.append).start()
        run_until(loop, lambda: bool(done))
        client.settimeout(10)
        data = b""
        while len(data) < 5000:
            data += client.recv(65536)
        assert data == payload.read_bytes()[1000:6000]
    finally:
        os.close(fd)
        conn.force_close()
        client.close()
        loop.close()


def test_peer_gone_mid_transfer_reports_failure_and_leaks_nothing(payload: Path) -> None:
    fds = open_fds()
    loop = EventLoop()
    conn, client = connection_pair(loop, Handler())
    done: list[bool] = []
    fd = os.open(payload, os.O_RDONLY)
    sender = FileSender(conn, fd, 0, SIZE, done.append)
    sender.start()
    loop.run_once(0.05)
    client.close()
    run_until(loop, lambda: bool(done))
    assert done == [False]
    conn.force_close()
    os.close(fd)
    loop.close()
    assert open_fds() == fds  # the duplicate of the socket's fd is closed too


def test_file_shorter_than_promised(tmp_path: Path) -> None:
    path = tmp_path / "short"
    path.write_bytes(b"x" * 100)
    loop = EventLoop()
    conn, client = connection_pair(loop, Handler())
    done: list[bool] = []
    fd = os.open(path, os.O_RDONLY)
    try:
        FileSender(conn, fd, 0, 1000, done.append).start()
        run_until(loop, lambda: bool(done))
        assert done == [False]
    finally:
        os.close(fd)
        conn.force_close()
        client.close()
        loop.close()
