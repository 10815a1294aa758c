"""Every limit and timeout of the HTTP server, with its named default, in one place.

A request that breaks a limit gets the matching status (414, 431, 413, 408) and the
connection closes: a peer that sends too much, too slowly or too strangely costs a bounded
amount of memory and time, never more.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

#: Longest request target (the URL in the request line), bytes -> 414.
MAX_REQUEST_LINE = 8 * 1024
#: Largest header block (names + values + separators), bytes -> 431.
MAX_HEADER_BYTES = 16 * 1024
#: Most header fields in one request -> 431.
MAX_HEADERS = 100
#: Largest request body, bytes -> 413 (nginx's client_max_body_size is 1 MiB too).
MAX_BODY = 1024 * 1024
#: Seconds to receive a whole request head, from its first byte (slowloris) -> 408.
HEADER_TIMEOUT = 10.0
#: Seconds a request body may go without a byte arriving -> 408.
BODY_TIMEOUT = 30.0
#: Seconds an idle keep-alive connection is kept before it is closed silently.
KEEPALIVE_TIMEOUT = 30.0
#: Seconds queued output may go without the peer taking a byte before the connection drops.
WRITE_TIMEOUT = 60.0
#: Seconds a closing connection keeps reading (and discarding) so the peer gets our last
#: response instead of a reset (Apache's and nginx's lingering close).
LINGER_TIMEOUT = 2.0
#: Requests served on one connection before it is closed (nginx keepalive_requests).
MAX_REQUESTS_PER_CONNECTION = 10_000
#: Pipelined responses that may wait (for a worker pool, a stream, a file) before the
#: server stops parsing that connection's further input.
MAX_PENDING_RESPONSES = 64
#: Unparsed input kept while parsing waits for pending responses; beyond it, the peer is
#: dropped.
MAX_BUFFERED_INPUT = 1024 * 1024
#: Seconds between two sweeps of the connections' deadlines (and Date refreshes).
SWEEP_INTERVAL = 1.0


@dataclass(frozen=True, slots=True)
class Limits:
    """The server's limits; every field has the module constant of the same name as default."""

    max_request_line: int = MAX_REQUEST_LINE
    max_header_bytes: int = MAX_HEADER_BYTES
    max_headers: int = MAX_HEADERS
    max_body: int = MAX_BODY
    header_timeout: float = HEADER_TIMEOUT
    body_timeout: float = BODY_TIMEOUT
    keepalive_timeout: float = KEEPALIVE_TIMEOUT
    write_timeout: float = WRITE_TIMEOUT
    linger_timeout: float = LINGER_TIMEOUT
    max_requests_per_connection: int = MAX_REQUESTS_PER_CONNECTION
    max_pending_responses: int = MAX_PENDING_RESPONSES
    max_buffered_input: int = MAX_BUFFERED_INPUT
    sweep_interval: float = SWEEP_INTERVAL

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise ValueError(f"limit {field.name} must be a positive number, got {value!r}")
