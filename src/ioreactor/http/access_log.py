"""The access log: one line per response, in Common or Combined Log Format, or JSON.

Data flow::

    ResponseQueue.respond / fill / refuse --AccessLog.responded / refused-->
        request id: the request's X-Request-ID, or a new one added to the response
        --> one line to the ``ioreactor.http.access`` logger

Formats (``--access-log-format``)::

    common    10.0.0.7:41852 - - [06/Dec/2026:16:30:00 +0000] "GET /a HTTP/1.1" 200 13 "ID"
    combined  common + "Referer" "User-Agent" before the id (the default)
    json      {"time": ..., "remote": ..., "method": ..., "target": ..., "version": ...,
               "status": ..., "bytes": ..., "referer": ..., "user_agent": ...,
               "request_id": ...}

The first field is the peer with its port (``host:port``, ``[v6]:port``: the port tells
one client's connections apart). The request id ends each text line (a field log
parsers of the two formats skip). An id a client sent is used when it is at most
:data:`MAX_REQUEST_ID` printable ASCII
characters; otherwise the server makes one (128 random bits, hex) and answers with it
in ``X-Request-ID``, so the client's log and the server's can be joined. Keeping an
access log sends every response through the response queue (no short path): it is for
when the lines are wanted.
"""

from __future__ import annotations

import json
import logging
import os
import time
from typing import TYPE_CHECKING

from ioreactor.http.headers import encode_field
from ioreactor.http.response import FileResponse, Response, StreamingResponse, describe

if TYPE_CHECKING:
    from ioreactor.http.errors import HttpError
    from ioreactor.http.request import Request

log = logging.getLogger("ioreactor.http.access")

#: The formats ``--access-log-format`` takes.
FORMATS = ("combined", "common", "json")
REQUEST_ID = "X-Request-ID"
#: Longest request id taken from a client.
MAX_REQUEST_ID = 200


class AccessLog:
    """Logs every response (a :class:`~ioreactor.http.observers.ResponseObserver`)."""

    __slots__ = ("_clock", "format")

    every = True

    def __init__(self, format: str = "combined") -> None:
        if format not in FORMATS:
            raise ValueError(f"access log format must be one of {', '.join(FORMATS)}")
        self.format = format
        self._clock = (-1, "")

    def __repr__(self) -> str:
        return f"<AccessLog {self.format}>"

    def responded(self, request: Request, result: object) -> object:
        request_id = request.headers.get("x-request-id")
        if not _usable(request_id):
            request_id = os.urandom(16).hex()
            result = with_field(result, REQUEST_ID, request_id)
        assert request_id is not None
        self._log(request, *describe(result), request_id)
        return result

    def sent(self, request: Request, status: int, size: int) -> None:
        """A response the dispatcher encoded itself (ASGI): its id is the client's, or
        ``-`` (no field can be added to it any more)."""
        request_id = request.headers.get("x-request-id")
        self._log(request, status, size, request_id if request_id and _usable(request_id) else "-")

    def _log(self, request: Request, status: int, size: int, request_id: str) -> None:
        peer = _host(request.peer)
        if self.format == "json":
            log.info(
                "%s",
                json.dumps(
                    {
                        "time": time.time(),
                        "remote": peer,
                        "method": request.method,
                        "target": request.target,
                        "version": request.version,
                        "status": status,
                        "bytes": size if size >= 0 else None,
                        "referer": request.headers.get("referer"),
                        "user_agent": request.headers.get("user-agent"),
                        "request_id": request_id,
                    },
                    ensure_ascii=False,
                ),
            )
            return
        line = (
            f'{peer} - - [{self._now()}] "{_quoted(request.method)} {_quoted(request.target)} '
            f'HTTP/{request.version}" {status} {size if size >= 0 else "-"}'
        )
        if self.format == "combined":
            referer = request.headers.get("referer") or "-"
            agent = request.headers.get("user-agent") or "-"
            line += f' "{_quoted(referer)}" "{_quoted(agent)}"'
        log.info('%s "%s"', line, _quoted(request_id))

    def refused(self, peer: object, error: HttpError) -> None:
        if self.format == "json":
            log.info(
                "%s",
                json.dumps(
                    {
                        "time": time.time(),
                        "remote": _host(peer),
                        "status": error.status,
                        "error": error.detail,
                    }
                ),
            )
        else:
            log.info('%s - - [%s] "-" %d - "%s"', _host(peer), self._now(), error.status,
                     _quoted(error.detail))  # fmt: skip

    def abandoned(self, request: Request) -> None:
        """Nothing to log: no response was sent."""

    def timed_out(self, kind: str) -> None:
        """Timeouts are counted by metrics; the 408 itself is logged by :meth:`refused`."""

    def _now(self) -> str:
        """The time in the log's form, formatted once a second."""
        second = int(time.time())
        if self._clock[0] != second:
            self._clock = (second, time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(second)))
        return self._clock[1]


def with_field(result: object, name: str, value: str) -> object:
    """``result`` answered with one more header field (a copy of a ``Response``, which
    an application may share; the others are made per request)."""
    field = encode_field(name, value)
    if isinstance(result, str):
        return Response(result, headers=[(name, value)])
    if isinstance(result, bytes):
        return Response(result, headers=[(name, value)], content_type="application/octet-stream")
    if type(result) is Response:
        copy: Response = Response.__new__(Response)  # (a compiled class in that build)
        copy.status, copy.body, copy.close = result.status, result.body, result.close
        copy.fields = result.fields + field
        return copy
    if isinstance(result, StreamingResponse | FileResponse):
        result.fields += field
    return result


def _usable(request_id: str | None) -> bool:
    return (
        request_id is not None
        and 0 < len(request_id) <= MAX_REQUEST_ID
        and request_id.isascii()
        and request_id.isprintable()
    )


def _host(peer: object) -> str:
    """The peer as ``host:port`` (``[v6]:port``): the port tells connections apart."""
    if isinstance(peer, tuple):
        host, port = peer[0], peer[1]
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return "-" if peer is None or peer == "" else str(peer)


def _quoted(text: str) -> str:
    """Text inside a quoted log field: no quote, backslash or control character."""
    if text.isprintable() and '"' not in text and "\\" not in text:
        return text
    return text.encode("unicode_escape").decode("ascii").replace('"', '\\"')
