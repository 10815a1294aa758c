"""The ``Date`` header is the current second: after an idle gap, and across a boundary.

Real requests to a real server on loopback; each response's Date must fall between the
wall-clock second the request was sent in and the one its response arrived in.
"""

from __future__ import annotations

import socket
import time
from email.utils import parsedate_to_datetime

from http_support import live_server

REQUEST = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n"
RESPONSE_END = b"Hello, World!"
#: An idle gap that crosses at least one second boundary: a Date cached before it is
#: stale after it.
IDLE = 1.1


def dated_request(sock: socket.socket) -> tuple[float, int, float]:
    """(sent at, the response's Date as a timestamp, received at)."""
    sent = time.time()
    sock.sendall(REQUEST)
    data = b""
    while not data.endswith(RESPONSE_END):
        chunk = sock.recv(4096)
        assert chunk, f"closed after {data!r}"
        data += chunk
    received = time.time()
    head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1")
    fields = dict(line.split(": ", 1) for line in head.split("\r\n")[1:])
    return sent, int(parsedate_to_datetime(fields["Date"]).timestamp()), received


def assert_current(sent: float, date: int, received: float) -> None:
    assert int(sent) <= date <= int(received), (
        f"Date {date} outside the seconds of the exchange [{sent:.4f}, {received:.4f}]"
    )


def test_the_first_response_after_an_idle_start_carries_the_current_second() -> None:
    with live_server() as (_, server):
        time.sleep(IDLE)  # the server started (and cached its first Date) a second ago
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            assert_current(*dated_request(sock))
            time.sleep(IDLE)  # idle again, the connection kept
            assert_current(*dated_request(sock))


def test_responses_around_a_second_boundary_carry_the_second_they_are_made_in() -> None:
    with live_server() as (_, server):
        for _ in range(2):  # two boundaries, a connection each (fewer requests than its limit)
            with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
                dated_request(sock)
                time.sleep(1.0 - time.time() % 1.0 + 0.95)  # 50 ms before the next second
                end = time.time() + 0.2
                exchanges = 0
                while time.time() < end:
                    assert_current(*dated_request(sock))
                    exchanges += 1
                assert exchanges > 10
