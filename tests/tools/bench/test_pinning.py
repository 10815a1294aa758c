"""ServerProcess: pinned start, readiness, SIGTERM then SIGKILL (a stopped server too),
its output in a log file; the echo peers answer."""

from __future__ import annotations

import os
import signal
import socket
import sys
import textwrap
import time
from pathlib import Path

import pytest

from ioreactor.testing import free_port, recv_exactly
from ioreactor_tools.bench import pinning
from ioreactor_tools.bench.peers import ECHO_PEERS, echo_peer_command, uvloop_available
from ioreactor_tools.bench.pinning import ServerProcess, ServerWindow, core_plan

CORE = core_plan().server


def echo_round_trip(port: int, payload: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(payload)
        return recv_exactly(s, len(payload))


@pytest.mark.parametrize("peer", ECHO_PEERS)
def test_peer_is_pinned_and_echoes(peer: str):
    if peer == "uvloop-echo" and (reason := uvloop_available()):
        pytest.skip(reason)
    port = free_port()
    with ServerProcess(echo_peer_command(peer, port), port=port, core=CORE) as server:
        payload = os.urandom(100_000)
        assert echo_round_trip(port, payload) == payload
        if CORE is not None:
            assert os.sched_getaffinity(server.pid) == {CORE}
        assert server.sample().cpu_seconds >= 0
    assert server.proc is not None and server.proc.returncode == 0  # clean SIGTERM exit


def test_pinning_falls_back_to_sched_setaffinity(monkeypatch: pytest.MonkeyPatch):
    if CORE is None:
        pytest.skip("needs two usable cores")
    monkeypatch.setattr(pinning.shutil, "which", lambda name: None)  # taskset missing
    port = free_port()
    command = echo_peer_command("asyncio-echo", port)
    assert pinning.pinned_command(command, CORE) == command
    with ServerProcess(command, port=port, core=CORE) as server:
        assert os.sched_getaffinity(server.pid) == {CORE}


def test_server_ignoring_sigterm_is_killed_after_the_grace_period():
    port = free_port()
    code = textwrap.dedent(
        f"""
        import signal, socket, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        s = socket.create_server(("127.0.0.1", {port}))
        time.sleep(120)
        """
    )
    server = ServerProcess([sys.executable, "-c", code], port=port, stop_grace=0.5).start()
    assert server.stop() == -9


def test_server_that_never_listens_fails_fast():
    with pytest.raises(RuntimeError, match="exited"):
        ServerProcess([sys.executable, "-c", "pass"], port=free_port()).start()


def test_server_window_samples_the_server_as_the_window_opens_and_closes():
    port = free_port()
    with ServerProcess(echo_peer_command("asyncio-echo", port), port=port, core=CORE) as server:
        window = ServerWindow(server)
        window.open()
        deadline = time.monotonic() + 30
        with socket.create_connection(("127.0.0.1", port), timeout=30) as held:
            # echoes until the server's CPU clock (10 ms ticks) moves inside the window
            while server.sample(count_fds=False).cpu_seconds == window.before.cpu_seconds:
                assert time.monotonic() < deadline, "the server used no CPU in 30 s"
                held.sendall(b"x" * 10_000)
                recv_exactly(held, 10_000)
            window.close()  # the held connection is open: counted in the closing sample
    assert window.before.pids == window.after.pids == (server.pid,)
    assert window.after.cpu_seconds > window.before.cpu_seconds
    assert window.before.fds == 0  # not counted as the window opens
    assert window.after.fds > 0 and window.after.rss_bytes > 0


def test_a_stopped_server_is_continued_and_takes_the_sigterm():
    port = free_port()
    with ServerProcess(echo_peer_command("asyncio-echo", port), port=port) as server:
        os.kill(server.pid, signal.SIGSTOP)
    assert server.proc is not None and server.proc.returncode == 0  # not SIGKILL's -9


def test_output_goes_to_the_log_file_and_launch_does_not_wait(tmp_path: Path):
    code = "import sys; print('to stdout', flush=True); sys.exit('to stderr')"
    server = ServerProcess([sys.executable, "-c", code], port=0, log_path=tmp_path / "server.log")
    server.launch()  # nothing ever listens: start() would fail
    try:
        assert server.wait(30) == 1
    finally:
        server.stop()
    assert (tmp_path / "server.log").read_text() == "to stdout\nto stderr\n"
