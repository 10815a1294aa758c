"""The hostile-HTTP corpus: raw request bytes, the status the server must answer, and
whether it must close the connection afterwards.

Each hostile case is refused with its status and ``Connection: close``, and nothing
after it on the connection is ever parsed -- the property that defeats request
smuggling, where two parsers disagree on where a request ends. The tests append a
second request to every case and check it is never answered. A few near-misses that
are valid HTTP are kept too (``close=False``): they must be served, and the request
after them too, so the corpus also shows the server does not refuse what RFC 9112
allows.

Complements ``tests/http/test_http_malformed.py`` (request-line, bare LF, obs-fold and
limit cases through the in-process harness): these cases are about smuggling and
injection variants, and run against a real server over loopback.
"""

from __future__ import annotations

from dataclasses import dataclass

from ioreactor.http.limits import Limits

#: Limits of the corpus server: small, so the "overlong" cases stay small.
LIMITS = Limits(max_request_line=1024, max_header_bytes=4096, max_headers=32, max_body=65536)


@dataclass(frozen=True)
class Case:
    name: str
    raw: bytes
    status: int
    close: bool = True
    #: Set when the server does not meet the case yet: why (the test is a strict xfail).
    bug: str = ""


def post(*fields: bytes, body: bytes = b"") -> bytes:
    """A POST /echo with the given header lines (no Host added: the case decides)."""
    return (
        b"POST /echo HTTP/1.1\r\nHost: t\r\n"
        + b"".join(f + b"\r\n" for f in fields)
        + b"\r\n"
        + body
    )


def get(target: bytes = b"/", *fields: bytes) -> bytes:
    return (
        b"GET "
        + target
        + b" HTTP/1.1\r\nHost: t\r\n"
        + b"".join(f + b"\r\n" for f in fields)
        + b"\r\n"
    )


CHUNKED_BODY = b"5\r\nhello\r\n0\r\n\r\n"
#: A body a CL.TE or TE.CL desync would read as the start of a second request.
SMUGGLE_BODY = b"0\r\n\r\nGET /admin HTTP/1.1\r\nHost: t\r\n\r\n"

CASES: list[Case] = [
    # -- CL.TE / TE.CL: both framings in one request -------------------------------------
    Case(
        "CL.TE", post(b"Content-Length: 6", b"Transfer-Encoding: chunked", body=SMUGGLE_BODY), 400
    ),
    Case(
        "TE.CL", post(b"Transfer-Encoding: chunked", b"Content-Length: 4", body=SMUGGLE_BODY), 400
    ),
    Case(
        "CL 0 with TE",
        post(b"Content-Length: 0", b"Transfer-Encoding: chunked", body=SMUGGLE_BODY),
        400,
    ),
    Case(
        "TE chunked then CL after",
        post(b"Transfer-Encoding: chunked", b"X: y", b"Content-Length: 39", body=SMUGGLE_BODY),
        400,
    ),
    # -- TE.TE: obfuscated Transfer-Encoding ------------------------------------------------
    Case("TE xchunked", post(b"Transfer-Encoding: xchunked", body=SMUGGLE_BODY), 501),
    Case("TE chunked-x", post(b"Transfer-Encoding: chunked-x", body=SMUGGLE_BODY), 501),
    Case("TE chunk", post(b"Transfer-Encoding: chunk", body=SMUGGLE_BODY), 501),
    Case("TE identity", post(b"Transfer-Encoding: identity", body=SMUGGLE_BODY), 501),
    Case(
        "TE chunked, identity",
        post(b"Transfer-Encoding: chunked, identity", body=CHUNKED_BODY),
        400,
    ),
    Case(
        "TE identity, chunked",
        post(b"Transfer-Encoding: identity, chunked", body=CHUNKED_BODY),
        501,
    ),
    Case(
        "TE chunked, chunked", post(b"Transfer-Encoding: chunked, chunked", body=CHUNKED_BODY), 400
    ),
    Case(
        "TE twice: chunked, identity",
        post(b"Transfer-Encoding: chunked", b"Transfer-Encoding: identity", body=CHUNKED_BODY),
        400,
    ),
    Case(
        "TE twice: x, chunked",
        post(b"Transfer-Encoding: x", b"Transfer-Encoding: chunked", body=CHUNKED_BODY),
        501,
    ),
    Case("TE line folded", post(b"X: y", b" Transfer-Encoding: chunked", body=CHUNKED_BODY), 400),
    Case("TE value folded", post(b"Transfer-Encoding:", b" chunked", body=CHUNKED_BODY), 400),
    Case("TE space before colon", post(b"Transfer-Encoding : chunked", body=CHUNKED_BODY), 400),
    Case("TE tab before colon", post(b"Transfer-Encoding\t: chunked", body=CHUNKED_BODY), 400),
    Case("TE vertical tab", post(b"Transfer-Encoding: \x0bchunked", body=CHUNKED_BODY), 400),
    Case("TE form feed", post(b"Transfer-Encoding: chunked\x0c", body=CHUNKED_BODY), 400),
    Case("TE NUL", post(b"Transfer-Encoding: chunked\x00", body=CHUNKED_BODY), 400),
    Case("TE quoted", post(b'Transfer-Encoding: "chunked"', body=CHUNKED_BODY), 501),
    Case(
        "TE with CL, tab OWS",
        post(b"Transfer-Encoding:\tchunked", b"Content-Length: 3", body=CHUNKED_BODY),
        400,
    ),
    Case(
        "TE with CL, upper case",
        post(b"TRANSFER-ENCODING: CHUNKED", b"Content-Length: 3", body=CHUNKED_BODY),
        400,
    ),
    Case(
        "TE in HTTP/1.0 with CL",
        b"POST /echo HTTP/1.0\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n"
        + CHUNKED_BODY,
        400,
    ),
    # -- Content-Length: duplicated, signed, decorated -----------------------------------
    Case(
        "CL twice, different", post(b"Content-Length: 5", b"Content-Length: 6", body=b"hello!"), 400
    ),
    Case("CL +5", post(b"Content-Length: +5", body=b"hello"), 400),
    Case("CL -5", post(b"Content-Length: -5", body=b"hello"), 400),
    Case("CL 5.0", post(b"Content-Length: 5.0", body=b"hello"), 400),
    Case("CL 0x5", post(b"Content-Length: 0x5", body=b"hello"), 400),
    Case("CL 5 5", post(b"Content-Length: 5 5", body=b"hello"), 400),
    Case("CL 5,6", post(b"Content-Length: 5,6", body=b"hello!"), 400),
    Case("CL empty", post(b"Content-Length: ", body=b"hello"), 400),
    Case("CL 2**64", post(b"Content-Length: 18446744073709551616", body=b"hello"), 400),
    Case(
        "CL 2**63 (a number, too large)",
        post(b"Content-Length: 9223372036854775808", body=b"hello"),
        413,
    ),
    Case("CL space before colon", post(b"Content-Length : 5", body=b"hello"), 400),
    Case("CL with NUL", post(b"Content-Length: 5\x00", body=b"hello"), 400),
    Case("CL over max_body", post(b"Content-Length: 65537", body=b"x"), 413),
    # -- header injection: CR, LF, NUL and other controls in names and values ------------
    Case("CR in name", get(b"/", b"X\rY: z"), 400),
    Case("LF in name", get(b"/", b"X\nY: z"), 400),
    Case("NUL in name", get(b"/", b"X\x00Y: z"), 400),
    Case("space in name", get(b"/", b"X Y: z"), 400),
    Case("empty name", get(b"/", b": z"), 400),
    Case("no colon", get(b"/", b"Xyz"), 400),
    Case("DEL in name", get(b"/", b"X\x7fY: z"), 400),
    Case("CR in value", get(b"/", b"X: a\rSet-Cookie: evil=1"), 400),
    Case("NUL in value", get(b"/", b"X: a\x00b"), 400),
    Case("BEL in value", get(b"/", b"X: a\x07b"), 400),
    # the request line ends at the CRLF: an HTTP/0.9 request, refused
    Case("CRLF in target", b"GET /a\r\nX-Injected: 1 HTTP/1.1\r\nHost: t\r\n\r\n", 505),
    Case("LF in target", b"GET /a\nb HTTP/1.1\r\nHost: t\r\n\r\n", 400),
    Case("tab in target", b"GET /a\tb HTTP/1.1\r\nHost: t\r\n\r\n", 400),
    Case("CR in method", b"G\rET / HTTP/1.1\r\nHost: t\r\n\r\n", 400),
    # -- invalid UTF-8 and NUL bytes ------------------------------------------------------
    Case("NUL in method", b"GE\x00T / HTTP/1.1\r\nHost: t\r\n\r\n", 400),
    Case("NUL in version", b"GET / HTTP/1.\x001\r\nHost: t\r\n\r\n", 400),
    Case(
        "NUL in chunk size",
        post(b"Transfer-Encoding: chunked", body=b"5\x00\r\nhello\r\n0\r\n\r\n"),
        400,
    ),
    Case(
        "NUL in chunk data framing",
        post(b"Transfer-Encoding: chunked", body=b"5\r\nhello\x00\r\n0\r\n\r\n"),
        400,
    ),
    Case("invalid UTF-8 in method", b"G\xc3\x28T / HTTP/1.1\r\nHost: t\r\n\r\n", 400),
    Case("invalid UTF-8 in version", b"GET / HTTP/\xff.1\r\nHost: t\r\n\r\n", 400),
    Case("invalid UTF-8 in name", get(b"/", b"X-\xc3\x28: z"), 400),
    Case("raw non-ASCII in the target", get(b"/echo?q=\xc3\x28\xff"), 400),
    # -- chunk sizes that overflow or lie ---------------------------------------------------
    Case(
        "chunk size 2**72-1",
        post(b"Transfer-Encoding: chunked", body=b"ffffffffffffffffff\r\n"),
        400,
    ),
    Case(
        "chunk size 2**64",
        post(b"Transfer-Encoding: chunked", body=b"10000000000000000\r\nx\r\n"),
        400,
    ),
    # a declared chunk size is not refused up front; the body limit applies as bytes come
    Case(
        "chunk size 2**63-1",
        post(b"Transfer-Encoding: chunked", body=b"7fffffffffffffff\r\n" + b"x" * 65537),
        413,
    ),
    Case("chunk size -1", post(b"Transfer-Encoding: chunked", body=b"-1\r\nx\r\n0\r\n\r\n"), 400),
    Case(
        "chunk size 0x5",
        post(b"Transfer-Encoding: chunked", body=b"0x5\r\nhello\r\n0\r\n\r\n"),
        400,
    ),
    Case(
        "chunk size +5", post(b"Transfer-Encoding: chunked", body=b"+5\r\nhello\r\n0\r\n\r\n"), 400
    ),
    Case(
        "chunk shorter than size",
        post(b"Transfer-Encoding: chunked", body=b"6\r\nhello\r\n0\r\n\r\n"),
        400,
    ),
    Case(
        "chunk size bare LF",
        post(b"Transfer-Encoding: chunked", body=b"5\nhello\r\n0\r\n\r\n"),
        400,
    ),
    Case(
        "last chunk without CRLF",
        post(b"Transfer-Encoding: chunked", body=b"5\r\nhello\r\n0\r\nX"),
        400,
    ),
    # -- overlong everything --------------------------------------------------------------
    Case("long method", b"G" * 2000 + b" / HTTP/1.1\r\nHost: t\r\n\r\n", 400),
    Case("long target", get(b"/" + b"a" * 2000), 414),
    Case("long version", b"GET / HTTP/1." + b"1" * 2000 + b"\r\nHost: t\r\n\r\n", 400),
    Case("long header name", get(b"/", b"X" * 5000 + b": v"), 431),
    Case("long header value", get(b"/", b"X: " + b"v" * 5000), 431),
    Case("many headers", get(b"/", *[b"X-%d: v" % i for i in range(40)]), 431),
    Case(
        "long chunk extension",
        # llhttp skips chunk extensions without a limit (Node.js's CVE-2024-22019): the
        # body phase may read at most max_body + max_header_bytes bytes.
        post(b"Transfer-Encoding: chunked", body=b"5;" + b"e" * 200000 + b"\r\nhello\r\n0\r\n\r\n"),
        413,
    ),
    Case(
        "huge trailers",
        post(
            b"Transfer-Encoding: chunked",
            body=b"5\r\nhello\r\n0\r\n" + b"".join(b"T-%d: v\r\n" % i for i in range(40)) + b"\r\n",
        ),
        431,
    ),
    Case("long body", post(b"Content-Length: 70000", body=b"b" * 70000), 413),
    # -- near misses that are valid HTTP: served, and the connection goes on ---------------
    Case(
        "TE chunked with OWS",
        post(b"Transfer-Encoding:   chunked  ", body=CHUNKED_BODY),
        200,
        close=False,
    ),
    Case("TE upper case", post(b"TRANSFER-ENCODING: CHUNKED", body=CHUNKED_BODY), 200, close=False),
    Case("CL leading zeros", post(b"Content-Length: 0005", body=b"hello"), 200, close=False),
    Case(
        "obs-text (UTF-8 and not) in a value",
        get(b"/", b"X: caf\xc3\xa9 \xc3\x28 \xff"),
        200,
        close=False,
    ),
    Case("encoded CRLF in the target", get(b"/%0d%0aSet-Cookie:%20evil=1"), 404, close=False),
    Case("one empty line first", b"\r\n" + get(b"/"), 200, close=False),
]
