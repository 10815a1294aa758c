"""Graceful shutdown under load: every request the server fully received is answered.

Clients pipeline numbered requests as fast as the server answers them, and keep going
while SIGTERM arrives. At the end, for each connection, the number of answers the client
got must equal the number of whole requests the server logged as received on it, the
answers must be the requests in order, and the exit status must be 0.
"""

from __future__ import annotations

import re
import signal
import socket
import threading
from pathlib import Path

import pytest
from multicore_harness import TIMEOUT, AppServer, LineClient

from ioreactor.testing import wait_until

CLIENTS = 8
#: Requests a client keeps in flight (pipelined) at any time.
WINDOW = 32


class PipeliningClient:
    """Writes numbered requests (at most WINDOW unanswered) and reads answers until closed."""

    def __init__(self, client: LineClient) -> None:
        self.client = client
        self.answers: list[int] = []
        self.sent = 0
        self.window = threading.Semaphore(WINDOW)
        self.closed = threading.Event()
        self.bad_answer: bytes | None = None
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.writer = threading.Thread(target=self._write, daemon=True)
        self.reader.start()
        self.writer.start()

    def _write(self) -> None:
        try:
            while not self.closed.is_set():
                if not self.window.acquire(timeout=0.1):
                    continue
                self.client.send(b"%d" % self.sent)
                self.sent += 1
        except OSError:
            pass  # the server closed: requests in flight now were never received by it

    def _read(self) -> None:
        try:
            while True:
                line = self.client.readline()
                if line != b"%d" % len(self.answers):
                    self.bad_answer = line
                    return
                self.answers.append(len(self.answers))
                self.window.release()
        except (ConnectionError, OSError):
            pass
        finally:
            self.closed.set()

    def join(self) -> None:
        self.reader.join(TIMEOUT)
        self.closed.set()
        self.writer.join(TIMEOUT)


@pytest.mark.parametrize(
    "flags",
    [
        ("--workers", "2", "--dispatch", "reuseport"),
        ("--workers", "2", "--dispatch", "fdpass", "--loops", "2"),
        ("--workers", "0", "--loops", "2"),
    ],
    ids=["reuseport", "fdpass-threads", "in-process-threads"],
)
def test_every_fully_received_request_is_answered_before_exit(
    tmp_path: Path, flags: tuple[str, ...]
) -> None:
    server = AppServer(tmp_path, *flags).start()
    try:
        clients = [PipeliningClient(server.connect()) for _ in range(CLIENTS)]
        assert wait_until(lambda: all(len(c.answers) > 200 for c in clients))
        server.signal(signal.SIGTERM)
        for client in clients:
            client.join()
        assert server.wait() == 0
        received = {
            int(m.group(1)): int(m.group(2))
            for m in re.finditer(r"closed peer=(\d+) received=(\d+)", server.log())
        }
        for client in clients:
            assert client.bad_answer is None, f"answer out of order: {client.bad_answer!r}"
            port = client.client.port
            assert received[port] == len(client.answers), (
                f"connection {port}: server received {received[port]} requests, "
                f"client got {len(client.answers)} answers"
            )
            assert client.sent >= len(client.answers) > 200
            client.client.close()
    finally:
        server.stop()


def test_workers_stop_when_the_supervisor_is_gone(tmp_path: Path) -> None:
    """SIGKILL the supervisor: each worker sees its channel close and stops gracefully."""
    server = AppServer(tmp_path, "--workers", "2", "--dispatch", "fdpass").start()
    try:
        workers = list(server.worker_pids().values())
        server.proc.kill()
        server.proc.wait(TIMEOUT)
        server.wait_for(r"the supervisor is gone; stopping", 2, alive=False)

        def gone(pid: int) -> bool:
            try:
                with open(f"/proc/{pid}/stat") as f:
                    return f.read().split(") ")[1].startswith("Z")  # zombie until init reaps
            except FileNotFoundError:
                return True

        assert wait_until(lambda: all(gone(pid) for pid in workers))
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT).close()
    finally:
        server.stop()
