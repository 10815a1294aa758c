"""run_server end to end: real forked workers (both dispatch ways) serving real clients.

Each mode serves 20 connections with echo traffic checked byte for byte, must use every
worker, and stops on SIGTERM with exit status 0.
"""

from __future__ import annotations

import signal
import socket
from pathlib import Path

import pytest
from multicore_harness import AppServer

CONNECTIONS = 20
MODES = {
    "in-process": ("--workers", "0"),
    "in-process-threads": ("--workers", "0", "--loops", "2"),
    "reuseport": ("--workers", "2", "--dispatch", "reuseport"),
    "fdpass": ("--workers", "2", "--dispatch", "fdpass"),
    "fdpass-threads-least": (
        "--workers", "2", "--dispatch", "fdpass", "--loops", "2",
        "--balance", "least-connections",
    ),
}  # fmt: skip


@pytest.mark.parametrize("mode", list(MODES))
def test_every_mode_serves_on_every_worker_and_stops_cleanly(tmp_path: Path, mode: str) -> None:
    server = AppServer(tmp_path, *MODES[mode]).start()
    try:
        clients = [server.connect() for _ in range(CONNECTIONS)]
        pids = [client.pid() for client in clients]
        for i, client in enumerate(clients):
            for j in range(20):
                line = b"request %d.%d " % (i, j) + bytes(range(48, 120))
                assert client.request(line) == line
        workers = set(server.worker_pids().values())
        if server.workers:
            assert set(pids) == workers and len(workers) == server.workers, "every worker serves"
            assert server.pid not in pids, "the supervisor serves nobody itself"
        else:
            assert set(pids) == {server.pid}
        if "fdpass" in mode:  # round-robin or least-connections: an even split
            assert sorted(pids.count(pid) for pid in workers) == [10, 10]
        server.signal(signal.SIGTERM)
        for client in clients:
            assert client.sock.recv(1) == b"", "each connection closes gracefully"
            client.close()
        assert server.wait() == 0
        assert server.log().count("received=20") == CONNECTIONS
    finally:
        server.stop()


def test_ipv6_and_fdpass_hash_balance(tmp_path: Path) -> None:
    """hash balance keys on the peer host: every connection from ::1 goes to one worker."""
    if not socket.has_ipv6:
        pytest.skip("no IPv6 here")
    server = AppServer(
        tmp_path, "--workers", "2", "--dispatch", "fdpass", "--balance", "hash",
        "--listen", "[::1]:0",
    )  # fmt: skip
    server.launch()  # it announces [::1]: waited for here
    try:
        port = int(server.wait_for(r"listening on tcp://\[::1\]:(\d+)")[0].group(1))
        server.wait_for(r"worker \d+ \(pid \d+\) serving", 2)
        socks = [socket.create_connection(("::1", port), timeout=30) for _ in range(6)]
        pids = set()
        for sock in socks:
            sock.sendall(b"pid\n")
            pids.add(sock.recv(64))
        assert len(pids) == 1
        for sock in socks:
            sock.close()
        server.signal(signal.SIGTERM)
        assert server.wait() == 0
    finally:
        server.stop()


@pytest.mark.parametrize("workers", ["0", "2"])
def test_a_taken_address_is_reported_not_raised(tmp_path: Path, workers: str) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:  # no SO_REUSEPORT: nobody may join
        port = taken.getsockname()[1]
        server = AppServer(tmp_path, "--workers", workers, "--listen", f"127.0.0.1:{port}")
        server.launch()
        try:
            assert server.wait() == 1
            assert f"cannot listen on tcp://127.0.0.1:{port}: [Errno 98]" in server.log()
            assert "Traceback" not in server.log()
        finally:
            server.stop()
