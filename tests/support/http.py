"""HTTP/1.1 responses as a test's client sees them: one parser (httptools) for every suite.

::

    bytes from the server -> ResponseReader.feed -> [Response(status, headers, body), ...]

:class:`ResponseReader` takes a stream in any pieces (a live socket, a harness's
buffer); :func:`parse_responses` parses what is already there; :func:`read_responses`
reads a socket until enough responses arrived; :func:`raw_exchange` and
:func:`http_get` are whole exchanges on a new loopback connection.
"""

from __future__ import annotations

import socket
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import httptools

from ioreactor.testing import LIVENESS, read_until_closed

if TYPE_CHECKING:
    import httpx

#: A request every HTTP server of the suite answers: small, ``GET /``.
GET = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n"


@dataclass
class Response:
    """One complete response: header names as sent, values decoded as latin-1."""

    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (any case), or None."""
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None

    @property
    def closes(self) -> bool:
        """Whether it says ``Connection: close``."""
        value = self.header("connection")
        return value is not None and value.lower() == "close"


class ResponseReader:
    """Parses a response stream fed in any pieces; the complete responses in order
    (a HEAD response's body must be empty)."""

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.responses: list[Response] = []
        self._current = Response(0)
        self._body: list[bytes] = []

    def feed(self, data: bytes) -> None:
        self.parser.feed_data(data)

    @property
    def statuses(self) -> list[int]:
        return [r.status for r in self.responses]

    @property
    def bodies(self) -> list[bytes]:
        return [r.body for r in self.responses]

    def __len__(self) -> int:
        return len(self.responses)

    def __getitem__(self, index: int) -> Response:
        return self.responses[index]

    # httptools' callbacks

    def on_message_begin(self) -> None:
        self._current = Response(0)
        self._body = []

    def on_header(self, name: bytes, value: bytes) -> None:
        self._current.headers.append((name.decode("latin-1"), value.decode("latin-1")))

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        self._current.status = self.parser.get_status_code()
        self._current.body = b"".join(self._body)
        self.responses.append(self._current)


def parse_responses(data: bytes) -> list[Response]:
    """Every complete response in ``data``."""
    reader = ResponseReader()
    reader.feed(data)
    return reader.responses


def status_of(data: bytes) -> int:
    """The status code of the first response in ``data`` (its status line only)."""
    return int(data.split(b" ", 2)[1])


def read_responses(sock: socket.socket, count: int) -> tuple[ResponseReader, bytes]:
    """Read ``sock`` until ``count`` responses are complete or the server closes; the
    parsed responses and the bytes read."""
    reader = ResponseReader()
    data = bytearray()
    while len(reader) < count:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
        reader.feed(chunk)
    return reader, bytes(data)


def raw_exchange(port: int, data: bytes, *, timeout: float = 10.0) -> tuple[bytes, bool]:
    """Send ``data`` on a new connection to 127.0.0.1:``port`` and read until the
    server closes or ``timeout`` passes: what was read, and whether the server closed."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        return read_until_closed(sock, timeout)


def http_get(port: int, request: bytes = GET, timeout: float = LIVENESS) -> int:
    """One request on a new connection to 127.0.0.1:``port``; the first response's status."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request)
        reader, data = read_responses(sock, 1)
        if not reader.responses:
            raise ConnectionError(f"closed before a response ({len(data)} bytes read)")
        return reader.responses[0].status


def comparable(
    reply: httpx.Response, own_fields: Collection[str]
) -> tuple[int, list[tuple[str, str]], bytes]:
    """A differential test's view of an httpx response: status, the header fields as a
    sorted multiset of (lower-case name, value) but ``own_fields`` (those each server
    writes its own way), and the body."""
    fields = sorted(
        (name.lower(), value)
        for name, value in reply.headers.multi_items()
        if name.lower() not in own_fields
    )
    return reply.status_code, fields, reply.content
