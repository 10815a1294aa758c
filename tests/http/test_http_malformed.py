"""A corpus of malformed and hostile requests: each gets its status, Connection: close,
and the connection ends; nothing after the bad request is ever parsed."""

from __future__ import annotations

import pytest
from http_support import Harness, live_server

from ioreactor.http.limits import Limits
from ioreactor.http.protocol import LINGER
from support.http import raw_exchange, status_of

LIMITS = Limits(max_request_line=256, max_header_bytes=1024, max_headers=10, max_body=4096)
SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: t\r\n\r\n"

CORPUS: list[tuple[str, bytes, int]] = [
    ("no version (0.9)", b"GET /\r\nHost: t\r\n\r\n", 505),
    ("extra token", b"GET / HTTP/1.1 extra\r\n\r\n", 400),
    ("no method", b" / HTTP/1.1\r\n\r\n", 400),
    ("space in target", b"GET /a b HTTP/1.1\r\n\r\n", 400),
    ("invalid method", b"G@T / HTTP/1.1\r\n\r\n", 400),
    ("lowercase version", b"GET / http/1.1\r\n\r\n", 400),
    ("bare LF line", b"GET / HTTP/1.1\nHost: t\n\n", 400),
    ("bare LF header", b"GET / HTTP/1.1\r\nHost: t\n\r\n", 400),
    ("bare CR header", b"GET / HTTP/1.1\r\nHost: t\r\nX: a\rb\r\n\r\n", 400),
    ("obs-fold", b"GET / HTTP/1.1\r\nHost: t\r\n folded\r\n\r\n", 400),
    ("space before colon", b"GET / HTTP/1.1\r\nHost: t\r\nHost : t\r\n\r\n", 400),
    ("NUL in header", b"GET / HTTP/1.1\r\nHost: a\x00b\r\n\r\n", 400),
    ("NUL in target", b"GET /\x00 HTTP/1.1\r\n\r\n", 400),
    # RFC 9112 3.2: an HTTP/1.1 request carries exactly one Host field.
    ("no Host in 1.1", b"GET / HTTP/1.1\r\n\r\n", 400),
    ("two Host fields", b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    ("two Host fields, POST", b"POST /echo HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n", 400),
    (
        "duplicate CL",
        b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
        400,
    ),
    (
        "CL and TE",
        b"POST /echo HTTP/1.1\r\nHost: t\r\n"
        b"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        400,
    ),
    (
        "TE and CL",
        b"POST /echo HTTP/1.1\r\nHost: t\r\n"
        b"Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n",
        400,
    ),
    ("CL with letters", b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 3x\r\n\r\nabc", 400),
    ("negative CL", b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: -3\r\n\r\nabc", 400),
    ("CL list", b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 3, 3\r\n\r\nabc", 400),
    (
        "CL overflow",
        b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 99999999999999999999999\r\n\r\n",
        400,
    ),
    (
        "huge chunk size",
        b"POST /echo HTTP/1.1\r\nHost: t\r\n"
        b"Transfer-Encoding: chunked\r\n\r\nffffffffffffffffffff\r\n",
        400,
    ),
    (
        "bad chunk size",
        b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        400,
    ),
    (
        "chunk size then space",
        b"POST /echo HTTP/1.1\r\nHost: t\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n3 ;a=b\r\nabc\r\n0\r\n\r\n",
        400,
    ),
    (
        "control char in chunk ext",
        b"POST /echo HTTP/1.1\r\nHost: t\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n3;\x01\r\nabc\r\n0\r\n\r\n",
        400,
    ),
    (
        "chunk without CRLF",
        b"POST /echo HTTP/1.1\r\nHost: t\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n0\r\n\r\n",
        400,
    ),
    (
        "TE not chunked last",
        b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
        400,
    ),
    (
        "TE twice",
        b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        400,
    ),
    ("TE in HTTP/1.0", b"POST /echo HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    ("TE gzip", b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\nabc", 501),
    (
        "TE gzip, chunked",
        b"POST /echo HTTP/1.1\r\nHost: t\r\n"
        b"Transfer-Encoding: gzip, chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        501,
    ),
    ("HTTP/0.9", b"GET /\r\n\r\n", 505),
    ("HTTP/2.0", b"GET / HTTP/2.0\r\n\r\n", 505),
    ("HTTP/1.7", b"GET / HTTP/1.7\r\n\r\n", 505),
    ("long target", b"GET /" + b"a" * 300 + b" HTTP/1.1\r\n\r\n", 414),
    (
        "too many headers",
        b"GET / HTTP/1.1\r\nHost: t\r\n"
        + b"".join(b"X-%d: v\r\n" % i for i in range(11))
        + b"\r\n",
        431,
    ),
    (
        "header block too big",
        b"GET / HTTP/1.1\r\nHost: t\r\n" + b"X-A: " + b"v" * 1100 + b"\r\n\r\n",
        431,
    ),
    ("body too big (CL)", b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 4097\r\n\r\n", 413),
    (
        "body too big (chunked)",
        b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
        + b"800\r\n"
        + b"x" * 2048
        + b"\r\n"
        + b"801\r\n"
        + b"x" * 2049
        + b"\r\n0\r\n\r\n",
        413,
    ),
    (
        "unknown expectation",
        b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nExpect: 200-ok\r\n\r\nx",
        417,
    ),
]


@pytest.mark.parametrize(
    ("request_bytes", "status"), [(r, s) for _, r, s in CORPUS], ids=[n for n, _, _ in CORPUS]
)
def test_malformed_request_gets_status_and_close(request_bytes: bytes, status: int) -> None:
    with Harness(limits=LIMITS) as h:
        h.send(request_bytes + SMUGGLED)
        data = h.take()
        assert status_of(data) == status, data
        head = data.partition(b"\r\n\r\n")[0]
        assert b"\r\nConnection: close\r\n" in head + b"\r\n"
        assert b"smuggled" not in data
        assert data.count(b"HTTP/1.1 ") == 1
        assert h.protocol.phase == LINGER
        assert h.eof  # FIN sent after the response
        h.client.close()
        h.loop.run_once(0.05)
        h.spin()
        assert h.conn.closed


@pytest.mark.parametrize("chunk", [1, 10, 100])
def test_small_chunks_of_a_body_within_max_body_are_accepted(chunk: int) -> None:
    """Chunk framing is bounded (extensions cannot stream for ever), but loosely enough
    that a body within ``max_body`` is not refused for being sent in small chunks: 10-byte
    chunks were 413 at 70 % of the limit."""
    body = bytes(range(256)) * 16  # 4,096 bytes: max_body exactly
    framed = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in _pieces(body, chunk))
    head = b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
    wire = head + framed + b"0\r\n\r\n"
    with Harness(limits=LIMITS) as h:
        for part in _pieces(wire, 512):  # reads that end inside the body are measured
            h.send(part)
        (response,) = h.responses()
        if chunk == 1:  # 6 wire bytes per body byte: beyond any fixed framing allowance
            assert response.status == 413
        else:
            assert (response.status, response.body) == (200, body)


def _pieces(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def test_valid_requests_before_a_bad_one_are_answered_first() -> None:
    with Harness(limits=LIMITS) as h:
        h.send(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n" * 2 + b"GET / HTTP/1.1\nbad\n\n")
        data = h.take()
        statuses = [int(part[:3]) for part in data.split(b"HTTP/1.1 ")[1:]]
        assert statuses == [200, 200, 400]


def test_header_split_across_reads_is_bounded() -> None:
    """A field value that never ends, sent in pieces: 431 before it grows without bound."""
    with Harness(limits=LIMITS) as h:
        h.send(b"GET / HTTP/1.1\r\nHost: t\r\nX-Long: ")
        for _ in range(10):
            h.send(b"v" * 300)
            if h.eof:
                break
        assert status_of(h.take()) == 431
        assert h.eof


def test_malformed_over_a_real_socket() -> None:
    with live_server(limits=LIMITS) as (_, server):
        for _, request_bytes, status in CORPUS[::6]:
            data, closed = raw_exchange(server.port, request_bytes)
            assert status_of(data) == status
            assert closed


def test_header_block_over_the_limit_across_small_reads() -> None:
    """Each read is small, the head they make is not: the header limit still holds."""
    with Harness(limits=LIMITS) as h:
        h.send(b"GET / HTTP/1.1\r\nHost: t\r\nX-A: " + b"a" * 600 + b"\r\n")
        assert not h.eof
        h.send(b"X-B: " + b"b" * 600 + b"\r\n\r\n" + SMUGGLED)
        data = h.take()
        assert status_of(data) == 431
        assert b"smuggled" not in data
        assert h.eof


def test_many_small_headers_in_one_small_read_are_counted() -> None:
    with Harness(limits=LIMITS) as h:
        h.send(b"GET / HTTP/1.1\r\nHost: t\r\n" + b"a:\r\n" * 11 + b"\r\n")
        assert status_of(h.take()) == 431
