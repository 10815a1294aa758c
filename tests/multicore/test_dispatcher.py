"""fd passing to a worker that dies: its connections go to another worker, no fd leaks."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from multicore_harness import AppServer

from ioreactor.testing import wait_until


def test_connections_queued_to_a_dead_worker_are_served_by_another(tmp_path: Path) -> None:
    server = AppServer(tmp_path, "--workers", "2", "--dispatch", "fdpass").start()
    stopped = 0
    try:
        pids = server.worker_pids()
        baseline = server.fds()
        stopped = pids[0]
        os.kill(stopped, signal.SIGSTOP)  # it takes no more fds from its channel
        clients = [server.connect() for _ in range(6)]  # round-robin: 3 of them go to it
        for client in clients:
            client.send(b"pid")
        os.kill(stopped, signal.SIGKILL)
        server.wait_for(r"re-dispatching 3 connection\(s\) a dead worker never received")
        answers = {int(client.readline()) for client in clients}
        assert stopped not in answers, "the dead worker served nothing"
        assert answers <= set(server.worker_pids().values())
        for client in clients:
            assert client.request(b"still served") == b"still served"
            client.close()
        server.wait_for(r"worker 0 restarted")
        assert wait_until(lambda: server.fds() == baseline), (
            f"supervisor holds {server.fds()} fds, {baseline} before"
        )
        server.signal(signal.SIGTERM)
        assert server.wait() == 0
    finally:
        if stopped:
            try:
                os.kill(stopped, signal.SIGKILL)
            except ProcessLookupError:
                pass
        server.stop()
