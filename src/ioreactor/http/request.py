"""One parsed HTTP request, as a handler sees it."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Final, Protocol
from urllib.parse import parse_qsl, unquote

from ioreactor.http.headers import Headers

try:
    import cython
except ImportError:  # the pure build runs without Cython installed
    import ioreactor._cython as cython


# A request usually lives for one read (its answer is rendered in the read that parsed
# it): the compiled build keeps freed requests for the next ones (Cython's freelist)
# instead of handing them back to the allocator.
@cython.freelist(64)
@cython.cclass
class Request:
    """Method, target, version, headers and body of one request.

    ``path`` is the percent-decoded path of the target (absolute-form targets are reduced
    to their path); ``query`` is the raw query string. ``params`` holds the router's path
    parameters. ``body`` is the whole body, or ``None`` on a route that streams the body
    to a :class:`BodyConsumer` instead. ``headers`` is built on first use.
    """

    __slots__ = (
        "_headers",
        "body",
        "keep_alive",
        "method",
        "params",
        "path",
        "peer",
        "query",
        "target",
        "version",
    )

    def __init__(
        self,
        method: str,
        target: str,
        version: str = "1.1",
        headers: Headers | list[tuple[bytes, bytes]] | None = None,
        body: bytes | None = b"",
        peer: Any = None,
    ) -> None:
        self.method = method
        self.target = target
        self.version = version
        #: A Headers, or the fields as the server parsed them until ``headers`` is first
        #: read: flat (name, value, name, value...).
        self._headers: Headers | list[bytes] = (
            headers if isinstance(headers, Headers) else Headers(headers or [])
        )
        self.body = body
        self.peer = peer
        self.params: Mapping[str, str] = NO_PARAMS
        #: Whether the connection stays open after this request's response.
        self.keep_alive = version == "1.1"
        if "?" in target or "%" in target or target[:1] != "/":
            self.path, self.query = split_target(target)
        else:
            self.path = target
            self.query = ""

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.target} HTTP/{self.version}>"

    @property
    def headers(self) -> Headers:
        headers = self._headers
        if type(headers) is list:
            pairs = list(zip(headers[::2], headers[1::2], strict=True))
            headers = self._headers = Headers(pairs)
        return headers  # type: ignore[return-value]  # a Headers once built

    def header_pairs(self) -> list[tuple[bytes, bytes]]:
        """The header fields as received, ``(name, value)`` bytes in order (the form
        ASGI and the WebSocket handshake take; no index is built)."""
        headers = self._headers
        if type(headers) is list:
            return list(zip(headers[::2], headers[1::2], strict=True))
        return headers.raw  # type: ignore[union-attr]  # a Headers once built

    def query_params(self) -> dict[str, str]:
        """The query string decoded into a dict (the last of repeated names wins)."""
        return dict(parse_qsl(self.query, keep_blank_values=True))

    @property
    def content_type(self) -> str | None:
        return self.headers.get("content-type")


def incoming(
    method: str,
    target: str,
    path: str,
    query: str,
    fields: list[bytes],
    peer: Any,
    version: str = "1.1",
) -> Request:
    """A request as the server parsed it: ``path`` and ``query`` already split from
    ``target`` (:func:`split_target`), ``fields`` flat (name, value, ...), no body
    yet, keep-alive. The per-request path: stores the
    slots, none of ``__init__``'s work."""
    request = Request.__new__(Request)  # (without __init__: the slots are stored here)
    request.method = method
    request.target = target
    request.path = path
    request.query = query
    request.version = version
    request._headers = fields
    request.body = b""
    request.peer = peer
    request.params = NO_PARAMS
    request.keep_alive = True
    return request


#: The version of nearly every request, as the parser gives it: one string object, so
#: that comparing a request's version with it is a pointer compare first.
HTTP_11: Final = "1.1"

#: ``Request`` without ``__init__``: the server stores the slots itself (``incoming``).
new_request = Request.__new__

#: The ``params`` of a request whose route has no parameters (shared, read-only).
NO_PARAMS: Mapping[str, str] = MappingProxyType({})


def split_target(target: str) -> tuple[str, str]:
    """``(decoded path, raw query)`` of a request target in origin, absolute or * form."""
    path, _, query = target.partition("?")
    if not path.startswith("/") and path != "*":
        # absolute-form (proxy style): scheme://authority/path
        _scheme, sep, rest = path.partition("://")
        slash = rest.find("/") if sep else -1
        path = rest[slash:] if slash >= 0 else "/"
    if "%" in path:
        path = unquote(path, errors="surrogateescape")
    return path, query


class BodyConsumer(Protocol):
    """What a ``stream_body`` route's handler returns: it receives the body piece by piece.

    ``on_data`` runs for every chunk as it arrives (chunked encoding already removed);
    ``on_end`` runs once the body is complete and returns the response.
    """

    def on_data(self, chunk: bytes) -> None: ...

    def on_end(self) -> object: ...
