"""The ASGI connection scope of a request.

Data flow::

    Request (parser) + the connection's addresses + the server's config
        --ScopeFactory.http / .websocket--> the scope dict the application receives
    X-Forwarded-For / X-Forwarded-Proto / Forwarded --ForwardedHeaders.resolve (the
        peer trusted: --proxy-headers, --proxy-allow-ips)--> the scope's ``client`` and
        ``scheme``

The scope follows asgiref's "HTTP & WebSocket ASGI Message Format" 2.4: ``path`` is the
percent-decoded path with ``root_path`` in front (as uvicorn sends it since 0.26),
``raw_path`` the target's path bytes as received, ``query_string`` the raw query,
``headers`` every field as received (names lower-cased, order and repeats kept),
``client`` / ``server`` as ``(host, port)`` (None for a Unix socket peer), ``state`` a
shallow copy of the lifespan state.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from ioreactor.http.forwarding import ForwardedHeaders
    from ioreactor.http.request import Request

#: The ASGI version the server speaks (``scope["asgi"]``).
ASGI_VERSION: Final[dict[str, str]] = {"version": "3.0", "spec_version": "2.4"}
#: What the server supports beyond the base spec (``scope["extensions"]``).
HTTP_EXTENSIONS: Final[dict[str, dict[str, Any]]] = {"http.response.trailers": {}}
WEBSOCKET_EXTENSIONS: Final[dict[str, dict[str, Any]]] = {"websocket.http.response": {}}


#: Targets that are their own path -> their bytes (``raw_path``), per process; the
#: table starts over when full.
RAW_PATH_ENTRIES = 256
_RAW_PATHS: dict[str, bytes] = {}


def address_pair(address: object) -> tuple[str, int] | None:
    """``(host, port)`` of a socket address, None for a Unix socket's (ASGI's form)."""
    if isinstance(address, tuple) and len(address) >= 2:
        return (str(address[0]), int(address[1]))
    return None


class ScopeFactory:
    """Builds the scopes of one server (its root path, trusted forwarding headers and
    lifespan state)."""

    __slots__ = ("forwarded", "raw_root", "root_path", "state")

    def __init__(
        self,
        *,
        root_path: str = "",
        forwarded: ForwardedHeaders | None = None,
        state: dict[str, Any] | None = None,
    ) -> None:
        self.root_path = root_path.rstrip("/")
        self.raw_root = self.root_path.encode("utf-8")
        self.forwarded = forwarded
        #: The lifespan state: each scope gets a shallow copy.
        self.state: dict[str, Any] = state if state is not None else {}

    def http(
        self,
        request: Request,
        client: tuple[str, int] | None,
        server: tuple[str, int] | None,
        scheme: str = "http",
    ) -> dict[str, Any]:
        target = request.target
        query = request.query
        if target is request.path:  # (the parser's common case: no query, nothing escaped)
            raw_path = _RAW_PATHS.get(target)
            if raw_path is None:
                if len(_RAW_PATHS) >= RAW_PATH_ENTRIES:
                    _RAW_PATHS.clear()
                raw_path = _RAW_PATHS[target] = target.encode("latin-1")
        else:
            raw_path = target.partition("?")[0].encode("latin-1")
        headers = [(name.lower(), value) for name, value in request.header_pairs()]
        scope = {
            "type": "http",
            "asgi": ASGI_VERSION,
            "http_version": request.version,
            "method": request.method,
            "scheme": scheme,
            "path": self.root_path + request.path,
            "raw_path": self.raw_root + raw_path,
            "query_string": query.encode("latin-1"),
            "root_path": self.root_path,
            "headers": headers,
            "client": client,
            "server": server,
            "state": self.state.copy(),
            "extensions": HTTP_EXTENSIONS,
        }
        if self.forwarded is not None:
            said = self.forwarded.resolve(request.peer, request.headers)
            if said is not None:
                if said.client is not None:
                    scope["client"] = (said.client, said.port)
                    request.peer = said.peer(request.peer)  # (the access log's client)
                if said.scheme is not None:
                    scope["scheme"] = "https" if said.scheme in ("https", "wss") else "http"
        return scope

    def websocket(
        self,
        request: Request,
        client: tuple[str, int] | None,
        server: tuple[str, int] | None,
        subprotocols: Iterable[str],
        scheme: str = "http",
    ) -> dict[str, Any]:
        scope = self.http(request, client, server, scheme)
        scope["type"] = "websocket"
        scope["scheme"] = "wss" if scope["scheme"] in ("https", "wss") else "ws"
        scope["subprotocols"] = list(subprotocols)
        scope["extensions"] = WEBSOCKET_EXTENSIONS
        del scope["method"]
        return scope
