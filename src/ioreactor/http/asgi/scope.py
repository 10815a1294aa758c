"""The ASGI connection scope of a request, and the proxy fields trusted peers may set.

Data flow::

    Request (parser) + the connection's addresses + the server's config
        --ScopeFactory.http / .websocket--> the scope dict the application receives
    X-Forwarded-For / X-Forwarded-Proto / Forwarded --TrustedProxies (peer trusted)-->
        the scope's ``client`` and ``scheme``

The scope follows asgiref's "HTTP & WebSocket ASGI Message Format" 2.4: ``path`` is the
percent-decoded path with ``root_path`` in front (as uvicorn sends it since 0.26),
``raw_path`` the target's path bytes as received, ``query_string`` the raw query,
``headers`` every field as received (names lower-cased, order and repeats kept),
``client`` / ``server`` as ``(host, port)`` (None for a Unix socket peer), ``state`` a
shallow copy of the lifespan state.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
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


class TrustedProxies:
    """Which peers may tell the client's address and scheme (``--forwarded-allow-ips``).

    ``allow``: addresses and networks (``127.0.0.1``, ``10.0.0.0/8``, ``::1``), ``*``
    for any peer, ``unix`` for peers on a Unix socket. Only a trusted peer's
    ``Forwarded`` (RFC 7239) or ``X-Forwarded-For`` / ``X-Forwarded-Proto`` fields are
    applied; a client talking to the server directly cannot forge its address. In a
    chain of proxies the client is the rightmost address that is not a trusted proxy
    (uvicorn's rule).
    """

    __slots__ = ("any", "networks", "unix")

    def __init__(self, allow: Iterable[str]) -> None:
        self.any = False
        self.unix = False
        self.networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        for item in allow:
            item = item.strip()
            if item == "*":
                self.any = True
            elif item == "unix":
                self.unix = True
            elif item:
                self.networks.append(ipaddress.ip_network(item, strict=False))

    def __repr__(self) -> str:
        return f"<TrustedProxies any={self.any} {[str(n) for n in self.networks]}>"

    def trusts(self, host: str | None) -> bool:
        """Whether a peer at ``host`` (None: a Unix socket peer) may set the fields."""
        if self.any:
            return True
        if host is None:
            return self.unix
        try:
            address = ipaddress.ip_address(host.partition("%")[0])
        except ValueError:
            return False
        return any(address in network for network in self.networks)

    def apply(self, scope: dict[str, Any], headers: list[tuple[bytes, bytes]]) -> None:
        """Rewrite ``scope``'s client and scheme from the fields of a trusted peer."""
        client = scope["client"]
        if not self.trusts(client[0] if client else None):
            return
        forwarded_for: list[str] = []
        proto: str | None = None
        for name, value in headers:
            if name == b"forwarded":
                hops, proto_seen = _parse_forwarded(value.decode("latin-1"))
                forwarded_for.extend(hops)
                proto = proto_seen or proto
            elif name == b"x-forwarded-for":
                forwarded_for.extend(h.strip() for h in value.decode("latin-1").split(","))
            elif name == b"x-forwarded-proto":
                proto = value.decode("latin-1").split(",")[-1].strip().lower()
        if proto in ("https", "wss"):
            scope["scheme"] = "https"
        elif proto in ("http", "ws"):
            scope["scheme"] = "http"
        hops = [h for h in forwarded_for if h]
        for host in reversed(hops):
            if not self.trusts(host) or host is hops[0]:
                scope["client"] = (host, 0)
                break


def _parse_forwarded(value: str) -> tuple[list[str], str | None]:
    """The ``for=`` hosts and the last ``proto=`` of a ``Forwarded`` field (RFC 7239)."""
    hosts: list[str] = []
    proto = None
    for element in value.split(","):
        for pair in element.split(";"):
            key, _, item = pair.strip().partition("=")
            item = item.strip().strip('"')
            key = key.lower()
            if key == "for":
                if item.startswith("["):  # [v6]:port
                    item = item[1 : item.find("]")] if "]" in item else item[1:]
                elif item.count(":") == 1:  # v4:port
                    item = item.partition(":")[0]
                hosts.append(item)
            elif key == "proto":
                proto = item.lower()
    return hosts, proto


def address_pair(address: object) -> tuple[str, int] | None:
    """``(host, port)`` of a socket address, None for a Unix socket's (ASGI's form)."""
    if isinstance(address, tuple) and len(address) >= 2:
        return (str(address[0]), int(address[1]))
    return None


class ScopeFactory:
    """Builds the scopes of one server (its root path, proxies and lifespan state)."""

    __slots__ = ("proxies", "raw_root", "root_path", "state")

    def __init__(
        self,
        *,
        root_path: str = "",
        proxies: TrustedProxies | None = None,
        state: dict[str, Any] | None = None,
    ) -> None:
        self.root_path = root_path.rstrip("/")
        self.raw_root = self.root_path.encode("utf-8")
        self.proxies = proxies
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
        if self.proxies is not None:
            self.proxies.apply(scope, headers)
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
