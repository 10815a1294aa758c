"""A stopping server drains before it closes: /healthz answers 503 from the moment
SIGTERM arrives, every response says ``Connection: close``, new connections are still
accepted and served for ``--drain-delay`` seconds, and only then does the listener close
(a balancer that checks /healthz has stopped sending by then)."""

from __future__ import annotations

import http.client
import os
import signal
import socket
import time
from pathlib import Path

import pytest

from ioreactor.testing import wait_until
from support.cli_process import TIMEOUT, http_get, start_serve
from support.processes import child_pids, signal_pending, stopped

DRAIN = 1.5


def refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False


@pytest.mark.parametrize("workers", ["0", "2"])
@pytest.mark.timeout(60)
def test_sigterm_answers_503_on_healthz_and_serves_until_the_drain_delay(
    tmp_path: Path, workers: str
) -> None:
    server, port = start_serve(tmp_path, "--workers", workers, "--drain-delay", str(DRAIN))
    with server:
        assert http_get(port, "/healthz") == (200, "ok\n")
        kept = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
        kept.request("GET", "/")
        first = kept.getresponse()
        assert first.read() == b"Hello, World!" and not first.will_close
        signal_at = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        assert wait_until(lambda: http_get(port, "/healthz")[0] == 503, timeout=DRAIN)
        # On a connection open before the drain: answered, and soon a response says
        # close (with several workers, the one holding it may start draining a moment
        # after the one that answered /healthz).
        while True:
            kept.request("GET", "/")
            last = kept.getresponse()
            assert last.status == 200 and last.read() == b"Hello, World!"
            if last.will_close:
                break
            assert time.monotonic() - signal_at < DRAIN, "the kept connection never closes"
            time.sleep(0.02)
        assert last.getheader("Connection") == "close"
        fresh = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
        fresh.request("GET", "/")  # a new connection during the drain is served
        reply = fresh.getresponse()
        assert reply.status == 200 and reply.getheader("Connection") == "close"
        assert wait_until(lambda: refused(port), timeout=DRAIN + 10)
        assert time.monotonic() - signal_at >= DRAIN * 0.9  # not before the delay
        assert server.wait() == 0


@pytest.mark.parametrize("workers", ["0", "1"])
@pytest.mark.timeout(60)
def test_connections_queued_when_the_listener_closes_are_served_not_reset(
    tmp_path: Path, workers: str
) -> None:
    """Clients that connected (the kernel completed the handshake) and sent a request
    while the server was not looking get their answer when it stops, not a reset."""
    server, port = start_serve(tmp_path, "--workers", workers)
    with server:
        pids = [server.pid] if workers == "0" else worker_pids(server.pid)
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        assert wait_until(lambda: all(stopped(p) for p in pids))
        try:
            clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(5)]
            for client in clients:
                client.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            server.proc.send_signal(signal.SIGTERM)
            # The stop must reach the stopped server before it runs again (a supervisor
            # forwards it a moment later), or it may answer before it knows it drains.
            assert wait_until(lambda: all(signal_pending(p, signal.SIGTERM) for p in pids))
        finally:
            for pid in pids:
                os.kill(pid, signal.SIGCONT)
        for client in clients:
            client.settimeout(TIMEOUT)
            reply = b""
            while chunk := client.recv(65536):
                reply += chunk
            assert reply.startswith(b"HTTP/1.1 200 OK") and b"Connection: close" in reply
            client.close()
        assert server.wait() == 0


def worker_pids(supervisor: int) -> list[int]:
    assert wait_until(lambda: bool(child_pids(supervisor)))
    return child_pids(supervisor)
