"""Raw HTTP/1.1 responses read back byte by byte: what a server put on the wire.

``parse(data)`` splits the bytes a connection received into responses (httptools: the
framing is checked as a client would check it) and keeps every field as sent, repeated
ones and their order included. ``Reply.chunked`` says how the body was framed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import httptools


@dataclass
class Reply:
    status: int
    reason: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    complete: bool = False

    def header(self, name: str) -> str | None:
        values = self.all(name)
        return values[0] if values else None

    def all(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]

    @property
    def chunked(self) -> bool:
        return (self.header("transfer-encoding") or "").lower() == "chunked"

    @property
    def closes(self) -> bool:
        return (self.header("connection") or "").lower() == "close"


class _Collector:
    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.replies: list[Reply] = []

    def on_message_begin(self) -> None:
        self.replies.append(Reply(0))

    def on_status(self, reason: bytes) -> None:
        self.replies[-1].reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        self.replies[-1].headers.append((name.decode("latin-1"), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        self.replies[-1].status = self.parser.get_status_code()

    def on_body(self, body: bytes) -> None:
        self.replies[-1].body += body

    def on_message_complete(self) -> None:
        self.replies[-1].complete = True


def parse(data: bytes) -> list[Reply]:
    """The responses in ``data``; the last one may be incomplete (``complete`` False:
    cut short, or ended by the close). Not for answers to HEAD (they have no body)."""
    collector = _Collector()
    try:
        collector.parser.feed_data(data)
    except httptools.HttpParserError:
        pass  # a response cut short by the close: the test checks ``complete``
    return collector.replies
