"""examples/worker_pool.py: decode on the loop, compute in the pools, answers in order.

The example runs as a subprocess (its process pool forks; pytest's process must not).
"""

from __future__ import annotations

import signal
from pathlib import Path

from multicore_harness import AppServer

EXAMPLE = Path(__file__).parents[2] / "examples" / "worker_pool.py"


def test_pool_results_come_back_on_the_loop_in_request_order(tmp_path: Path) -> None:
    server = AppServer(tmp_path, "--listen", "127.0.0.1:0", "--workers", "0", script=EXAMPLE)
    server.start()
    try:
        slow = server.connect()
        # The sleep finishes last, yet its answer goes first: answers keep request order.
        slow.send(b"sleep 400\nprimes 1000\nping\nprimes 1000000\nbogus 1\nsleep 99999999")
        other = server.connect()
        for _ in range(5):  # the loop is free while the pools work
            assert other.request(b"ping") == b"pong"
        assert slow.readline() == b"slept 400 ms", "nothing overtakes the first request"
        assert slow.readline() == b"1000: 168 primes below 1000"
        assert slow.readline() == b"pong"
        assert slow.readline() == b"1000000: 78498 primes below 1000000"
        assert slow.readline() == b"error: bad request bogus 1"
        assert slow.readline() == b"error: bad request sleep 99999999"
        # Graceful stop with work still in the pool: it is answered before the close.
        slow.send(b"sleep 300")
        # A round trip on another connection after it: the loop has read that request
        # (level-triggered, the earlier-ready fd is reported first).
        assert other.request(b"ping") == b"pong"
        other.close()
        server.signal(signal.SIGTERM)
        assert slow.readline() == b"slept 300 ms"
        assert slow.sock.recv(1) == b""
        assert server.wait() == 0
    finally:
        server.stop()
