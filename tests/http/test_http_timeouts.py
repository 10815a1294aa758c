"""Deadlines (header, body, keep-alive, linger, write) and bounded memory.

The sweep calls ``HttpProtocol.check_timeouts(now)``; here the tests call it with a chosen
``now`` (a deterministic clock), plus one end-to-end slowloris run with the real sweep.
"""

from __future__ import annotations

import socket
import time

from http_support import Harness, gated_slow_app, live_server

from ioreactor.http.app import App
from ioreactor.http.limits import Limits
from ioreactor.http.parser import FEED_SLICE
from ioreactor.http.protocol import BODY, HEADERS, IDLE, LINGER, RESUME_POLL, RESUME_POLL_MAX
from ioreactor.http.request import Request
from support.http import status_of

LIMITS = Limits(
    header_timeout=5.0,
    body_timeout=7.0,
    keepalive_timeout=11.0,
    write_timeout=13.0,
    linger_timeout=3.0,
)


def test_fresh_connection_that_sends_nothing_closes_after_the_header_timeout() -> None:
    with Harness(limits=LIMITS) as h:
        start = h.loop.now
        h.protocol.check_timeouts(start + 4.9)
        assert not h.conn.closed
        h.protocol.check_timeouts(start + 5.1)
        h.spin()
        assert h.conn.closed
        assert h.take() == b""  # silently: no request, no response


def test_idle_keepalive_connection_closes_after_the_keepalive_timeout() -> None:
    with Harness(limits=LIMITS) as h:
        h.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        h.take()
        served = max(h.conn.last_read, h.conn.last_write)
        h.protocol.check_timeouts(served + 10.9)
        assert not h.conn.closed
        h.protocol.check_timeouts(served + 11.1)
        h.spin()
        assert h.conn.closed
        assert h.take() == b""


def test_slow_head_gets_408_after_the_header_timeout() -> None:
    with Harness(limits=LIMITS) as h:
        h.send(b"GET / HTTP/1.1\r\nHost: t\r\n")
        assert h.protocol.phase == HEADERS
        began = h.protocol.since
        h.send(b"X-Drip: 1\r\n")  # progress does not extend a head's deadline
        h.protocol.check_timeouts(began + 4.9)
        assert h.take() == b""
        h.protocol.check_timeouts(began + 5.1)
        h.spin()
        data = h.take()
        assert status_of(data) == 408
        assert b"Connection: close" in data
        assert h.protocol.phase == LINGER


def test_stalled_body_gets_408_after_the_body_timeout() -> None:
    with Harness(limits=LIMITS) as h:
        h.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc")
        assert h.protocol.phase == BODY
        h.protocol.check_timeouts(h.conn.last_read + 6.9)
        assert h.take() == b""
        h.protocol.check_timeouts(h.conn.last_read + 7.1)
        h.spin()
        assert status_of(h.take()) == 408


def test_lingering_close_ends_after_the_linger_timeout() -> None:
    with Harness(limits=LIMITS) as h:
        h.send(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        assert h.protocol.phase == LINGER
        since = h.protocol.since
        h.protocol.check_timeouts(since + 2.9)
        assert not h.conn.closed
        h.protocol.check_timeouts(since + 3.1)
        h.spin()
        assert h.conn.closed


def test_linger_waits_for_the_last_response_to_leave() -> None:
    """A closing response still being read by a slow client is not cut by the linger
    deadline: it runs from the moment the output has drained."""
    with Harness(big_app(4 * 1024 * 1024), LIMITS) as h:
        h.send(b"GET /big HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", read=False)
        assert h.protocol.phase == LINGER and h.conn.output_size > 0
        since = h.protocol.since
        h.protocol.check_timeouts(since + 3.5)  # past the linger timeout, output queued
        assert not h.conn.closed
        h.spin(2000)  # the client reads everything
        assert h.received.endswith(b"x" * 1000) and len(h.received) > 4 * 1024 * 1024
        assert h.conn.output_size == 0
        done = max(h.protocol.since, h.conn.last_write)
        h.protocol.check_timeouts(done + 2.9)
        assert not h.conn.closed or h.eof  # (the client's own close may end it first)
        h.protocol.check_timeouts(done + 3.1)
        h.spin()
        assert h.conn.closed


def test_no_head_deadline_runs_while_the_server_holds_parsing() -> None:
    """Parsing pauses when responses pile up (slow pool handlers) with the next head
    half-parsed: that wait is the server's, so no 408; the deadline restarts when
    parsing resumes."""
    app, release = gated_slow_app()
    limits = Limits(header_timeout=5.0, max_pending_responses=2)
    with Harness(app, limits) as h:
        h.send(b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n" * 2 + b"GET /slow HTTP/1.1\r\nHost:")
        assert h.protocol.paused and h.protocol.phase == HEADERS
        h.protocol.check_timeouts(h.loop.now + 60.0)
        assert h.protocol.phase == HEADERS, "no 408 for a head the server holds"
        release.set()
        h.spin_until(lambda: not h.protocol.paused)
        assert h.protocol.since >= h.loop.now - 1.0
        h.send(b" x\r\n\r\n")
        h.spin_until(lambda: len(h.responses()) == 3)  # the third runs in the pool too
        assert [r.status for r in h.responses()] == [200, 200, 200]


def big_app(size: int) -> App:
    app = App()
    payload = b"x" * size

    @app.route("/big")
    def big(request: Request) -> bytes:
        return payload

    return app


def test_a_client_that_never_reads_is_bounded_then_dropped() -> None:
    """Output stops growing at the high water mark (reading pauses); the write deadline
    then drops the connection."""
    high = 256 * 1024
    with Harness(big_app(64 * 1024), LIMITS, high_water_mark=high) as h:
        request = b"GET /big HTTP/1.1\r\nHost: t\r\n\r\n"
        sent = 0
        try:
            for _ in range(2000):
                h.send(request * 8, read=False)
                sent += 8
        except BlockingIOError:
            pass  # the client's socket is full too: the server stopped reading
        assert not h.conn.reading
        assert sent < 2000 * 8  # the client blocked: the server stopped taking requests
        # queued output: the high water mark plus at most one feed slice of responses
        assert h.conn.output_size < high + FEED_SLICE // len(request) * 64 * 1024

        t0 = h.loop.now
        h.protocol.check_timeouts(t0)  # starts watching the stalled output
        h.protocol.check_timeouts(t0 + 12.0)
        assert not h.conn.closed
        h.protocol.check_timeouts(t0 + 13.5)
        assert h.conn.closed


def test_the_resume_check_of_a_reader_that_stays_full_backs_off() -> None:
    """Parsing paused on full output checks for the drain after RESUME_POLL, then ever
    less often (up to RESUME_POLL_MAX): a client that never reads costs a few checks a
    second until the write timeout, not a hundred."""
    high = 256 * 1024
    with Harness(big_app(64 * 1024), LIMITS, high_water_mark=high) as h:
        burst = b"GET /big HTTP/1.1\r\nHost: t\r\n\r\n" * 400  # one read larger than FEED_SLICE
        h.send(burst, read=False)  # parsed slice by slice until the output is full
        assert h.protocol.paused and h.protocol.resume_delay == RESUME_POLL
        delays = []
        for _ in range(8):
            h.protocol._resume()  # the output is still full
            delays.append(h.protocol.resume_delay)
        assert delays == sorted(delays) and delays[0] == 2 * RESUME_POLL
        assert delays[-1] == RESUME_POLL_MAX


def test_a_burst_of_small_requests_for_large_responses_is_paced() -> None:
    """1000 pipelined requests in one write, 64 KiB answers: output stays near the high
    water mark while the client is slow, and every response still arrives, in order."""
    high = 256 * 1024
    size = 64 * 1024
    with Harness(big_app(size), LIMITS, high_water_mark=high) as h:
        h.send(b"GET /big HTTP/1.1\r\nHost: t\r\n\r\n" * 1000, read=False)
        peak = h.conn.output_size
        assert peak < high + FEED_SLICE // 21 * size
        assert len(h.conn.input) > 0  # the rest waits, unparsed
        deadline = time.monotonic() + 30
        quiet_since = time.monotonic()
        while time.monotonic() < deadline and time.monotonic() - quiet_since < 0.5:
            before = len(h.received)
            h.loop.run_once(0.01)
            h._drain()
            peak = max(peak, h.conn.output_size)
            if len(h.received) != before:
                quiet_since = time.monotonic()
        responses = h.responses()
        assert len(responses) == 1000
        assert all(r.status == 200 and len(r.body) == size for r in responses)
        assert peak < high + FEED_SLICE // 21 * size


def test_slowloris_gets_408_and_is_closed_by_the_real_sweep() -> None:
    limits = Limits(header_timeout=0.3, sweep_interval=0.05)
    with live_server(limits=limits) as (_, server):
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n")
            received = b""
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                try:
                    sock.sendall(b"X: y\r\n")
                except OSError:
                    break
                sock.settimeout(0.1)
                try:
                    chunk = sock.recv(4096)
                except TimeoutError:
                    continue
                if not chunk:
                    break
                received += chunk
            assert status_of(received) == 408
        assert time.monotonic() < deadline


def test_idle_state_is_back_after_each_request() -> None:
    with Harness(limits=LIMITS) as h:
        for _ in range(3):
            h.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nhi")
            assert h.protocol.phase == IDLE
        assert len(h.responses()) == 3
