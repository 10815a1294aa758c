"""A stopping server drains before it closes: /healthz answers 503 from the moment
SIGTERM arrives, every response says ``Connection: close``, new connections are still
accepted and served for ``--drain-delay`` seconds, and only then does the listener close
(a balancer that checks /healthz has stopped sending by then)."""

from __future__ import annotations

import http.client
import signal
import socket
import time
from pathlib import Path

import pytest

from support.cli_process import TIMEOUT, http_get, start_serve, wait_until

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
        kept.request("GET", "/")  # on a connection open before the drain
        last = kept.getresponse()
        assert last.status == 200 and last.will_close  # its last response says close
        assert last.getheader("Connection") == "close"
        fresh = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
        fresh.request("GET", "/")  # a new connection during the drain is served
        reply = fresh.getresponse()
        assert reply.status == 200 and reply.getheader("Connection") == "close"
        assert wait_until(lambda: refused(port), timeout=DRAIN + 10)
        assert time.monotonic() - signal_at >= DRAIN * 0.9  # not before the delay
        assert server.wait() == 0
