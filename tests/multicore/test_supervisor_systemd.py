"""``ioreactor serve`` under systemd's protocols, with Debian's real tool.

``systemd-socket-activate`` binds the port and execs ``ioreactor serve`` (no --listen)
with LISTEN_FDS: the supervisor serves the inherited listener, its workers accept on
it. The notify socket is the test's: READY=1 once every worker accepts (never before
a request can be served), WATCHDOG=1 at half WATCHDOG_USEC while every worker is alive
and not while one is stopped (SIGSTOP), RELOADING=1 then READY=1 around a SIGHUP,
STOPPING=1 on SIGTERM -- each from the supervisor's pid. ``--fd N`` serves a listener
handed down by any parent.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ioreactor.testing import free_port, wait_until
from support.cli_process import TIMEOUT, http_get
from support.processes import child_pids
from support.server_process import accepts
from support.systemd import NotifySocket, socket_activate

#: The watchdog's timeout: pings every 0.5 s.
WATCHDOG_USEC = 1_000_000


@pytest.fixture
def notify(tmp_path: Path) -> Iterator[NotifySocket]:
    sock = NotifySocket(tmp_path / "notify")
    yield sock
    sock.close()


@pytest.mark.timeout(90)
def test_socket_activated_serve_notifies_systemd_and_feeds_the_watchdog(
    tmp_path: Path, notify: NotifySocket
) -> None:
    port = free_port()
    log = (tmp_path / "serve.log").open("wb")
    command = [socket_activate(), "-l", f"127.0.0.1:{port}", "--fdname=http"]
    command += [f"--setenv=NOTIFY_SOCKET={notify.name}", f"--setenv=WATCHDOG_USEC={WATCHDOG_USEC}"]
    command += [sys.executable, "-m", "ioreactor", "serve", "--workers", "2"]
    tool = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        # The tool listens, and execs the service at the first connection.
        assert wait_until(lambda: accepts(port)), "systemd-socket-activate never listened"
        ready, pid = notify.wait_for("READY=1")
        assert pid == tool.pid  # the tool execs the service in place: the main pid
        assert "STATUS=serving tcp://127.0.0.1:" in ready
        assert http_get(port, "/healthz") == (200, "ok\n")  # ready means serving
        assert "inherited listener(s)" in (tmp_path / "serve.log").read_text()

        pings = [m for m in notify.drain(1.6) if m == "WATCHDOG=1"]
        assert 2 <= len(pings) <= 5, pings  # every 0.5 s
        stuck = child_pids(tool.pid)[0]
        os.kill(stuck, signal.SIGSTOP)  # a stuck worker: no more pings
        try:
            notify.drain(2.0)  # pings go on until it has been silent 3 alive intervals
            assert "WATCHDOG=1" not in notify.drain(1.2)
        finally:
            os.kill(stuck, signal.SIGCONT)
        assert "WATCHDOG=1" in notify.drain(1.6)  # alive again: the pings resume

        tool.send_signal(signal.SIGHUP)
        reloading, _ = notify.wait_for("RELOADING=1")
        assert "MONOTONIC_USEC=" in reloading
        notify.wait_for("READY=1")
        assert http_get(port, "/")[0] == 200

        tool.send_signal(signal.SIGTERM)
        stopping, pid = notify.wait_for("STOPPING=1")
        assert "STATUS=stopping " in stopping
        assert pid == tool.pid
        assert tool.wait(TIMEOUT) == 0
    finally:
        if tool.poll() is None:
            os.killpg(tool.pid, signal.SIGKILL)
            tool.wait()
        log.close()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("workers", ["0", "2"])
def test_serve_takes_a_listener_passed_down_as_fd_n(tmp_path: Path, workers: str) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    fd = listener.fileno()
    with (tmp_path / "serve.log").open("wb") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "ioreactor", "serve", "--fd", str(fd), "--workers", workers],
            stdout=log,
            stderr=subprocess.STDOUT,
            pass_fds=[fd],
            start_new_session=True,
        )
    listener.close()  # the server's copy is the only one now
    try:
        assert wait_until(lambda: accepts(port))
        assert http_get(port, "/")[0] == 200
        server.send_signal(signal.SIGTERM)
        assert server.wait(TIMEOUT) == 0
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


def test_fd_that_is_not_a_listener_is_one_line_and_status_2(tmp_path: Path) -> None:
    read_end, write_end = os.pipe()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "ioreactor", "serve", "--fd", str(read_end)],
            capture_output=True,
            text=True,
            pass_fds=[read_end],
            timeout=TIMEOUT,
        )
    finally:
        os.close(read_end)
        os.close(write_end)
    assert done.returncode == 2
    assert done.stderr.strip() == f"ioreactor: error: serve: fd {read_end} is a FIFO, not a socket"


@pytest.mark.timeout(60)
def test_one_process_serve_notifies_too(tmp_path: Path, notify: NotifySocket) -> None:
    """``--workers 0``: the server process says READY=1, feeds the watchdog from its
    loop and says STOPPING=1."""
    port = free_port()
    command = [socket_activate(), "-l", f"127.0.0.1:{port}"]
    command += [f"--setenv=NOTIFY_SOCKET={notify.name}", f"--setenv=WATCHDOG_USEC={WATCHDOG_USEC}"]
    command += [sys.executable, "-m", "ioreactor", "serve", "--workers", "0"]
    with (tmp_path / "serve.log").open("wb") as log:
        tool = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        assert wait_until(lambda: accepts(port))
        ready, pid = notify.wait_for("READY=1")
        assert pid == tool.pid and "STATUS=serving tcp://127.0.0.1:" in ready
        assert http_get(port, "/")[0] == 200
        assert "WATCHDOG=1" in notify.drain(1.2)
        tool.send_signal(signal.SIGTERM)
        notify.wait_for("STOPPING=1")
        assert tool.wait(TIMEOUT) == 0
    finally:
        if tool.poll() is None:
            os.killpg(tool.pid, signal.SIGKILL)
            tool.wait()
