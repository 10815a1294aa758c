"""The scanner of plain heads (the compiled build's parser runs it before llhttp): a head
it accepts must give the request llhttp gives, and it must refuse every head the general
path has to see (framing fields, a missing or repeated Host, odd bytes, long heads).

The reference is the same parser fed a ``bytes`` subclass, which the scanner does not
take (it reads ``bytes``, ``bytearray`` and memoryviews only): llhttp parses it all.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ioreactor.http.errors import HttpError
from ioreactor.http.limits import Limits
from ioreactor.http.parser import Event, RequestParser
from ioreactor.http.plain_head import HeadScanner, header_fields
from ioreactor.http.request import Request
from ioreactor.loop.event_loop import EventLoop


class GeneralOnly(bytes):
    """Bytes the scanner does not read: the general (llhttp) path parses them."""


@pytest.fixture(scope="module")
def loop() -> Iterator[EventLoop]:
    loop = EventLoop(name="plain-head-test")
    yield loop
    loop.close()


def outcome(events: list[Event] | None) -> list[object]:
    """Everything a request says, comparable."""
    out: list[object] = []
    for event in events or ():
        if isinstance(event, Request):
            out.append(
                (
                    event.method,
                    event.target,
                    event.path,
                    event.query,
                    event.version,
                    event.keep_alive,
                    event.body,
                    event.headers.raw,
                )
            )
        elif isinstance(event, HttpError):
            out.append(event.status)
        else:
            out.append(type(event).__name__)
    return out


def both_paths(
    loop: EventLoop, wire: bytes, limits: Limits | None = None
) -> tuple[list[object], list[object]]:
    limits = limits or Limits()
    scanned = outcome(RequestParser(limits, loop, ("peer", 1)).feed(wire))
    general = outcome(RequestParser(limits, loop, ("peer", 1)).feed(GeneralOnly(wire)))
    # As the compiled connection feeds a read: the start of the loop's read buffer.
    scratch = bytearray(wire + b"NOT A REQUEST\r\n\r\n")
    in_buffer = outcome(RequestParser(limits, loop, ("peer", 1)).feed(scratch, len(wire)))
    assert in_buffer == scanned
    return scanned, general


def scan(wire: bytes, limits: Limits | None = None) -> int:
    return HeadScanner(limits or Limits()).scan(wire, 0, len(wire))


PLAIN = b"GET /a/b HTTP/1.1\r\nHost: t\r\nAccept: */*\r\nUser-Agent: bench\r\n\r\n"


def test_a_plain_head_is_scanned_to_its_end() -> None:
    scanner = HeadScanner(Limits())
    wire = PLAIN + b"GET /next"
    assert scanner.scan(wire, 0, len(wire)) == len(PLAIN)
    assert scanner.method == "GET"
    assert wire[scanner.target_start : scanner.target_end] == b"/a/b"
    assert header_fields(wire[scanner.fields_start : scanner.fields_end]) == [
        (b"Host", b"t"),
        (b"Accept", b"*/*"),
        (b"User-Agent", b"bench"),
    ]
    assert scanner.escaped is False
    query = b"GET /a?x=%20 HTTP/1.1\r\nhost: t\r\n\r\n"
    assert scanner.scan(query, 0, len(query)) == len(query) and scanner.escaped is True


@pytest.mark.parametrize(
    "wire",
    [
        PLAIN[:-1],  # incomplete
        b"GET /a HTTP/1.1\r\nAccept: x\r\n\r\n",  # no Host
        b"GET /a HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",  # two
        b"HEAD /a HTTP/1.1\r\nHost: t\r\n\r\n",  # HEAD: the general path
        b"GET /a HTTP/1.0\r\nHost: t\r\n\r\n",
        b"GET http://t/a HTTP/1.1\r\nHost: t\r\n\r\n",  # absolute form
        b"GET /a HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n",
        b"GET /a HTTP/1.1\r\nHost: t\r\ntransfer-ENCODING: chunked\r\n\r\n",
        b"GET /a HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        b"GET /a HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\n\r\n",
        b"GET /a HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\n\r\n",
        b"GET /a HTTP/1.1\r\nHost : t\r\n\r\n",  # space before the colon
        b"GET /a HTTP/1.1\r\nHost: t\r\n folded\r\n\r\n",  # obsolete line folding
        b"GET /a HTTP/1.1\nHost: t\n\n",  # bare LF
        b"GET /a HTTP/1.1\r\nHost: t\x00\r\n\r\n",  # a control byte in a value
        b"GET /a\x7f HTTP/1.1\r\nHost: t\r\n\r\n",
        b"GET  /a HTTP/1.1\r\nHost: t\r\n\r\n",
        b"get /a HTTP/1.1\r\nHost: t\r\n\r\n",
    ],
)
def test_heads_the_general_path_must_see_are_not_scanned(wire: bytes) -> None:
    assert scan(wire) == 0


def test_limits_keep_heads_on_the_general_path() -> None:
    limits = Limits(max_request_line=256, max_headers=10, max_header_bytes=1024)
    assert scan(b"GET /" + b"a" * 300 + b" HTTP/1.1\r\nHost: t\r\n\r\n", limits) == 0
    assert scan(b"GET / HTTP/1.1\r\nHost: t\r\n" + b"X: y\r\n" * 10 + b"\r\n", limits) == 0
    assert scan(b"GET / HTTP/1.1\r\nHost: t\r\nX: " + b"y" * 1000 + b"\r\n\r\n", limits) == 0


@pytest.mark.parametrize(
    "wire",
    [
        PLAIN,
        PLAIN * 3,
        b"GET /a?x=1&y=%41 HTTP/1.1\r\nHost: t\r\nX-Empty:\r\nX-Tab:\t v \r\n\r\n",
        b"DELETE /r HTTP/1.1\r\nHOST: t\r\n\r\n" + PLAIN,
        PLAIN + b"GET /a HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n" + PLAIN,
        PLAIN + b"GET /a HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        PLAIN + b"POST /a HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nok" + PLAIN,
    ],
)
def test_scanned_requests_are_the_ones_llhttp_gives(loop: EventLoop, wire: bytes) -> None:
    scanned, general = both_paths(loop, wire)
    assert scanned == general


def test_the_last_allowed_request_closes_on_both_paths(loop: EventLoop) -> None:
    scanned, general = both_paths(loop, PLAIN * 3, Limits(max_requests_per_connection=2))
    assert scanned == general
    assert [r[5] for r in scanned if isinstance(r, tuple)] == [True, False]


_TOKEN = st.text("abcHOSTxyz-!#", min_size=0, max_size=8).map(str.encode)
_VALUE = st.text("av \t:/\x01\x7fé", min_size=0, max_size=6).map(lambda s: s.encode("utf-8"))
_FIELD = st.one_of(
    st.tuples(_TOKEN, _VALUE),
    st.sampled_from(
        [
            (b"Host", b"t"),
            (b"Content-Length", b"0"),
            (b"Connection", b"keep-alive"),
            (b"Transfer-Encoding", b"chunked"),
        ]
    ),
)


@settings(max_examples=300, deadline=None)
@given(
    method=st.sampled_from([b"GET", b"POST", b"HEAD", b"OPTIONS", b"GeT"]),
    target=st.text("/a?%=&.~ #\x00", min_size=0, max_size=8).map(str.encode),
    version=st.sampled_from([b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2.0"]),
    fields=st.lists(_FIELD, max_size=5),
    separator=st.sampled_from([b": ", b":", b" : ", b":\t"]),
    eol=st.sampled_from([b"\r\n", b"\r\n", b"\n"]),
)
def test_any_head_gives_the_same_events_on_both_paths(
    loop: EventLoop,
    method: bytes,
    target: bytes,
    version: bytes,
    fields: list[tuple[bytes, bytes]],
    separator: bytes,
    eol: bytes,
) -> None:
    head = method + b" " + target + b" " + version + eol
    head += b"".join(name + separator + value + eol for name, value in fields) + eol
    scanned, general = both_paths(loop, head + PLAIN)
    assert scanned == general


def test_an_upgrade_behind_scanned_heads_ends_where_its_head_ends(loop: EventLoop) -> None:
    """The offset of the new protocol's first byte counts the plain heads scanned before
    llhttp saw the upgrade request."""
    upgrade = (
        b"GET /ws HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
        b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    )
    wire = PLAIN * 2 + upgrade + b"\x81\x80frame"
    parser = RequestParser(Limits(), loop, ("peer", 1))
    events = parser.feed(wire) or []
    assert [e.target for e in events if isinstance(e, Request)] == ["/a/b", "/a/b", "/ws"]
    assert parser.upgrading and parser.upgraded_at == len(PLAIN * 2 + upgrade)
    assert events[-1].header_pairs()[0] == (b"Host", b"t")  # type: ignore[union-attr]
    assert events[0].header_pairs() == [  # type: ignore[union-attr]
        (b"Host", b"t"),
        (b"Accept", b"*/*"),
        (b"User-Agent", b"bench"),
    ]
