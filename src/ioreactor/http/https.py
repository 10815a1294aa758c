"""HTTP over TLS: what an HTTPS server gives the TLS layer (:mod:`ioreactor.net.tls`).

::

    TcpServer(..., ssl=context(alpn=HTTPS_ALPN), ssl_plaintext_reply=PLAIN_HTTP_REPLY)
        first bytes "GET / HTTP/1.1" on the TLS port -> PLAIN_HTTP_REPLY, then close

The handler is the plain :class:`~ioreactor.http.handler.HttpHandler`: it reads and
writes plaintext, whatever the connection does underneath.
"""

from __future__ import annotations

#: ALPN protocols an HTTPS server offers (this server speaks HTTP/1.1 only).
HTTPS_ALPN = ("http/1.1",)

_BODY = b"400 Bad Request: a plain HTTP request was sent to an HTTPS port (use https://)\n"

#: Answered in plaintext to an HTTP request sent to the TLS port, as nginx does (a
#: client that forgot ``https://`` reads why, instead of a reset).
PLAIN_HTTP_REPLY = (
    b"HTTP/1.1 400 Bad Request\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Length: %d\r\n"
    b"Connection: close\r\n"
    b"\r\n" % len(_BODY)
) + _BODY
