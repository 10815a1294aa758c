"""The request parser alone: bytes in, events out, no connection and no application.

Each feed returns its events in order -- requests, body chunks, END, CONTINUE, and an
HttpError last when the input is refused -- and parsing stops for good after a request
that ends the connection.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from ioreactor.http.errors import HttpError
from ioreactor.http.limits import Limits
from ioreactor.http.parser import BODY, CONTINUE, HEAD, IDLE, STOPPED, End, Event, RequestParser
from ioreactor.http.request import Request
from ioreactor.loop.event_loop import EventLoop

GET = b"GET /a?x=1 HTTP/1.1\r\nHost: t\r\n\r\n"
POST = b"POST /up HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello"
CHUNKED = (
    b"PUT /up HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\nX-Trailer: t\r\n\r\n"
)


def parser_for(loop: EventLoop, limits: Limits | None = None) -> RequestParser:
    return RequestParser(limits or Limits(), loop, ("peer", 1))


def shape(events: list[Event] | None) -> list[object]:
    """Events as comparable values: (method, target, body) for a request."""
    out: list[object] = []
    for event in events or ():
        if isinstance(event, Request):
            out.append((event.method, event.target, event.body))
        elif isinstance(event, HttpError):
            out.append(event.status)
        elif isinstance(event, End):
            out.append(("end", event.request.target))
        else:
            out.append(event)
    return out


def test_a_plain_request_is_one_complete_event(loop: EventLoop) -> None:
    parser = parser_for(loop)
    (request,) = parser.feed(GET) or ()
    assert isinstance(request, Request)
    assert (request.method, request.target, request.path, request.query) == (
        "GET",
        "/a?x=1",
        "/a",
        "x=1",
    )
    assert (request.version, request.keep_alive, request.body) == ("1.1", True, b"")
    assert request.headers.get("host") == "t" and request.peer == ("peer", 1)
    assert parser.position == IDLE


def test_a_body_is_a_head_its_chunks_and_end(loop: EventLoop) -> None:
    parser = parser_for(loop)
    assert shape(parser.feed(POST)) == [("POST", "/up", None), b"hello", ("end", "/up")]
    assert shape(parser.feed(CHUNKED)) == [("PUT", "/up", None), b"abc", b"de", ("end", "/up")]


def test_events_are_the_same_whatever_the_reads(loop: EventLoop) -> None:
    """Split at every byte: the same requests and body, in the same order."""
    wire = GET + POST + CHUNKED + GET
    whole = shape(parser_for(loop).feed(wire))
    parser = parser_for(loop)
    pieces = [event for i in range(len(wire)) for event in parser.feed(wire[i : i + 1]) or ()]
    split = shape(pieces)
    body = b"".join(e for e in split if isinstance(e, bytes))
    assert body == b"".join(e for e in whole if isinstance(e, bytes)) == b"helloabcde"
    assert [e for e in split if not isinstance(e, bytes)] == [
        e for e in whole if not isinstance(e, bytes)
    ]


def test_a_head_split_across_reads_is_reported_in_progress(loop: EventLoop) -> None:
    parser = parser_for(loop)
    assert parser.feed(b"GET /a HTTP/1.1\r\nHo") is None  # no event yet
    assert parser.position == HEAD
    assert shape(parser.feed(b"st: t\r\n\r\n")) == [("GET", "/a", b"")]
    assert parser.position == IDLE


def test_expect_100_continue_comes_before_the_head(loop: EventLoop) -> None:
    parser = parser_for(loop)
    events = parser.feed(
        b"POST /up HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n"
    )
    assert shape(events) == [CONTINUE, ("POST", "/up", None)]
    assert parser.position == BODY
    assert shape(parser.feed(b"ok")) == [b"ok", ("end", "/up")]


def test_parsing_stops_after_a_request_that_closes(loop: EventLoop) -> None:
    """Nothing behind ``Connection: close`` is parsed, not even a malformed request."""
    parser = parser_for(loop)
    events = parser.feed(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n" + b"BAD\r\n\r\n")
    assert shape(events) == [("GET", "/", b"")]
    assert events is not None and isinstance(events[0], Request)
    assert events[0].keep_alive is False
    assert parser.position == STOPPED


def test_the_last_allowed_request_closes(loop: EventLoop) -> None:
    parser = parser_for(loop, Limits(max_requests_per_connection=2))
    events = parser.feed(GET * 3) or []
    assert [e.keep_alive for e in events if isinstance(e, Request)] == [True, False]
    assert parser.position == STOPPED


def test_an_error_is_the_last_event_after_the_requests_before_it(loop: EventLoop) -> None:
    parser = parser_for(loop)
    events = parser.feed(GET + b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n" + GET)
    assert shape(events) == [("GET", "/a?x=1", b""), 400]
    assert parser.position == STOPPED


@pytest.mark.parametrize(
    ("wire", "status"),
    [
        (b"GET /" + b"a" * 300 + b" HTTP/1.1\r\n\r\n", 414),
        (b"GET / HTTP/1.1\r\nHost: t\r\n" + b"X: y\r\n" * 11 + b"\r\n", 431),
        (b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 99\r\n\r\n", 413),
        (b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nExpect: x\r\n\r\n", 417),
        (b"GET / HTTP/1.1\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
    ],
)
def test_limits_and_framing_rules_refuse(loop: EventLoop, wire: bytes, status: int) -> None:
    limits = Limits(max_request_line=256, max_headers=10, max_body=64)
    assert shape(parser_for(loop, limits).feed(wire)) == [status]


def alternate_case(name: bytes) -> bytes:
    return bytes(c ^ 0x20 if i % 2 and chr(c).isalpha() else c for i, c in enumerate(name))


@pytest.mark.parametrize(
    "field",
    [
        b"Content-Length: 0",
        b"Transfer-Encoding: chunked",
        b"Expect: 100-continue",
        b"Connection: keep-alive",
        b"Upgrade: h2c",
    ],
)
@pytest.mark.parametrize("spell", [bytes.lower, bytes.upper, alternate_case])
def test_a_field_the_parser_acts_on_is_seen_in_any_case(
    loop: EventLoop, field: bytes, spell: Callable[[bytes], bytes]
) -> None:
    """A head with a framing or protocol field takes the general path, which reads it
    (the plain path, which does not, is for heads without any)."""
    name, value = field.split(b": ")
    body = b"0\r\n\r\n" if name == b"Transfer-Encoding" else b""
    parser = parser_for(loop)
    head = b"GET / HTTP/1.1\r\nHost: t\r\n" + spell(name) + b": " + value + b"\r\n\r\n"
    events = parser.feed(head + body)
    assert parser.careful
    assert [e for e in shape(events) if not isinstance(e, tuple) or e[0] != "end"] == [
        ("GET", "/", None if body else b"")
    ]


@pytest.mark.parametrize(
    "field",
    [b"User-Agent: u", b"ACCEPT: */*", b"Cookie: a=b", b"Referer: /", b"Upgrade-Insecure: 1"],
)
def test_other_fields_of_the_same_lengths_keep_the_plain_path(
    loop: EventLoop, field: bytes
) -> None:
    parser = parser_for(loop)
    (request,) = parser.feed(b"GET / HTTP/1.1\r\nHost: t\r\n" + field + b"\r\n\r\n") or ()
    assert not parser.careful
    assert isinstance(request, Request) and request.body == b""


def test_plain_targets_are_decoded_once_per_loop(loop: EventLoop) -> None:
    """A target that is its own path is remembered per loop: the next request on any
    connection of the loop gets the same string (no decoding)."""
    (first,) = parser_for(loop).feed(b"GET /same HTTP/1.1\r\nHost: t\r\n\r\n") or ()
    (again,) = parser_for(loop).feed(b"GET /same HTTP/1.1\r\nHost: t\r\n\r\n") or ()
    (escaped,) = parser_for(loop).feed(b"GET /s%61me HTTP/1.1\r\nHost: t\r\n\r\n") or ()
    assert isinstance(first, Request) and isinstance(again, Request)
    assert again.target is first.target and again.path is first.path == "/same"
    assert isinstance(escaped, Request) and escaped.path == "/same"
    assert escaped.target == "/s%61me"
