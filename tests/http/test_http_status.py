"""Status lines use RFC 9110's reason phrases, and agree with the error bodies."""

from __future__ import annotations

import pytest
from http_support import live_server

from ioreactor.http.head import status_line
from ioreactor.http.limits import Limits
from support.http import raw_exchange

#: RFC 9110, section 15: every status code it defines and its reason phrase (306 and 418
#: are "(Unused)").
RFC9110 = {
    100: "Continue",
    101: "Switching Protocols",
    200: "OK",
    201: "Created",
    202: "Accepted",
    203: "Non-Authoritative Information",
    204: "No Content",
    205: "Reset Content",
    206: "Partial Content",
    300: "Multiple Choices",
    301: "Moved Permanently",
    302: "Found",
    303: "See Other",
    304: "Not Modified",
    305: "Use Proxy",
    307: "Temporary Redirect",
    308: "Permanent Redirect",
    400: "Bad Request",
    401: "Unauthorized",
    402: "Payment Required",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    406: "Not Acceptable",
    407: "Proxy Authentication Required",
    408: "Request Timeout",
    409: "Conflict",
    410: "Gone",
    411: "Length Required",
    412: "Precondition Failed",
    413: "Content Too Large",
    414: "URI Too Long",
    415: "Unsupported Media Type",
    416: "Range Not Satisfiable",
    417: "Expectation Failed",
    421: "Misdirected Request",
    422: "Unprocessable Content",
    426: "Upgrade Required",
    500: "Internal Server Error",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
    505: "HTTP Version Not Supported",
}


@pytest.mark.parametrize("status", sorted(RFC9110))
def test_every_rfc9110_status_line_has_its_phrase(status: int) -> None:
    assert status_line(status) == f"HTTP/1.1 {status} {RFC9110[status]}\r\n".encode()


def test_a_body_over_the_limit_is_413_content_too_large_in_line_and_body() -> None:
    with live_server(limits=Limits(max_body=16)) as (_, server):
        data, closed = raw_exchange(
            server.port,
            b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 17\r\n\r\n" + b"x" * 17,
        )
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413 Content Too Large\r\n"), head
    assert b"Content Too Large" in body and closed


def test_a_target_over_the_limit_is_414_uri_too_long_in_line_and_body() -> None:
    with live_server(limits=Limits(max_request_line=64)) as (_, server):
        data, _ = raw_exchange(server.port, b"GET /" + b"a" * 100 + b" HTTP/1.1\r\nHost: t\r\n\r\n")
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 414 URI Too Long\r\n"), head
    assert b"URI Too Long" in body
