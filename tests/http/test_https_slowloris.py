"""The slowloris of TLS against ``ioreactor serve --certfile``: many connections each
trickle a ClientHello a byte at a time; every one is closed at the handshake timeout,
and normal HTTPS clients keep at least 80 % of their throughput meanwhile (the bar of
the HTTP slowloris benchmark).

Real processes: the server, the attack (tests/support/tls_trickle.py) and the normal
client (this process). Bounded: 200 slow connections, a few seconds per phase.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ioreactor.testing import free_port
from support.tls import Pki, Served, client_hello, shared_pki, tls_connect

#: Slow connections held open at once by the attack, and its pace per connection.
SLOW_CONNECTIONS = 200
TRICKLE_INTERVAL = 1.0
#: The server's handshake timeout in this test (the default is 10 s).
HANDSHAKE_TIMEOUT = 1.5
#: Seconds each throughput window lasts; rounds tried before giving up (shared machine).
WINDOW = 2.0
ROUNDS = 3
THROUGHPUT_TARGET = 0.8
#: Seconds the attack lasts: the wait for full strength, the attacked window, and one
#: more handshake timeout, by which the last connections the attack opened in the window
#: are closed too.
ATTACK = WINDOW + 2 * HANDSHAKE_TIMEOUT
TRICKLE = Path(__file__).resolve().parents[1] / "support" / "tls_trickle.py"


@pytest.fixture
def pki() -> Pki:
    return shared_pki()


def keepalive_rate(port: int, pki: Pki, seconds: float) -> float:
    """Keep-alive HTTPS GET / on one connection for ``seconds``: requests per second."""
    request = b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"
    with tls_connect(("127.0.0.1", port), pki.client_context()) as sock:
        done = 0
        start = time.monotonic()
        while time.monotonic() - start < seconds:
            sock.sendall(request)
            reply = b""
            while not reply.endswith(b"Hello, World!"):
                chunk = sock.recv(4096)
                assert chunk, "the server closed a normal client"
                reply += chunk
            done += 1
        return done / (time.monotonic() - start)


@pytest.mark.slow
def test_trickled_client_hellos_end_at_the_timeout_and_normal_clients_keep_80_percent(
    pki: Pki, tmp_path: Path
) -> None:
    port = free_port()
    args = [
        "serve",
        "--workers",
        "0",
        "--listen",
        f"127.0.0.1:{port}",
        "--certfile",
        pki.server.cert,
        "--keyfile",
        pki.server.key,
        "--handshake-timeout",
        str(HANDSHAKE_TIMEOUT),
        "--max-requests-per-connection",
        str(10**9),  # the normal client keeps its one connection
    ]
    hello = client_hello(pki.client_context()).hex()
    ratios = []
    with Served(args, port, tmp_path / "serve.log") as served:
        for _ in range(ROUNDS):
            alone = keepalive_rate(port, pki, WINDOW)
            attack = subprocess.Popen(
                [
                    sys.executable,
                    str(TRICKLE),
                    str(port),
                    str(SLOW_CONNECTIONS),
                    str(TRICKLE_INTERVAL),
                    str(ATTACK),
                    hello,
                ],
                stdout=subprocess.PIPE,
                text=True,
            )
            try:
                time.sleep(HANDSHAKE_TIMEOUT)  # the attack at full strength
                attacked = keepalive_rate(port, pki, WINDOW)
                out, _ = attack.communicate(timeout=60)
            finally:
                if attack.poll() is None:
                    attack.kill()
                    attack.wait()
            tally = json.loads(out)
            assert tally["answered"] == 0
            assert tally["closed"] >= SLOW_CONNECTIONS  # every first wave ended
            lifetimes = tally["lifetimes"]
            assert min(lifetimes) > HANDSHAKE_TIMEOUT * 0.9
            assert max(lifetimes) < HANDSHAKE_TIMEOUT + 3.0
            ratios.append(attacked / alone)
            if ratios[-1] >= THROUGHPUT_TARGET:
                break
        timeouts = served.log().count("no TLS handshake within")
        assert timeouts >= SLOW_CONNECTIONS
    assert max(ratios) >= THROUGHPUT_TARGET, f"throughput under attack / alone: {ratios}"
