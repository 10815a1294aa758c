"""Trusted forwarding headers: who the client is, and which scheme it used, when a
proxy in front of the server says so (``Forwarded``, ``X-Forwarded-For``,
``X-Forwarded-Proto``).

Data flow::

    request (peer = the proxy's address, headers) --ForwardedHeaders.resolve-->
        peer trusted? (a ProxyTrust: the list --proxy-allow-ips gives, shared with the
        PROXY protocol) --no--> None: the headers are ignored, whatever they say
                        --yes--> Forwarded(client, port, scheme)
    native App: ForwardingDispatcher sets request.peer = (client, port) before the app
    runs; an ASGI or WSGI dispatcher builds its scope / environ from the same resolve()

Anyone can write these headers, so they are believed only from a trusted peer (the
proxy the server sits behind). A chain ``client, proxy1, proxy2`` is read from the right:
each address the next trusted hop added is skipped while it is itself trusted, and the
first untrusted one is the client (all trusted: the leftmost). ``Forwarded`` (RFC 7239)
wins over the ``X-Forwarded-*`` pair when both are present; an obfuscated or
``unknown`` node ends the walk with no address. A value that is not an address is
ignored (the request keeps its peer), never an error: the proxy is trusted, the header
is best effort.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ioreactor.http.dispatch import Dispatcher, WrappingDispatcher

if TYPE_CHECKING:
    from ioreactor.http.headers import Headers
    from ioreactor.http.protocol import HttpProtocol
    from ioreactor.http.request import Request
    from ioreactor.net.proxy_protocol import ProxyTrust

#: Schemes a proxy may claim (others are ignored).
SCHEMES = frozenset({"http", "https", "ws", "wss"})


@dataclass(frozen=True, slots=True)
class Forwarded:
    """What trusted forwarding headers say: the client's address (None: not given or
    not usable), its port (0 when not given) and scheme (None: not given)."""

    client: str | None
    port: int = 0
    scheme: str | None = None

    def peer(self, fallback: Any) -> Any:
        """``request.peer`` in the form ``accept()`` gives (``fallback`` without an
        address): ``(host, port)``, or ``(host, port, 0, 0)`` for IPv6."""
        if self.client is None:
            return fallback
        if ":" in self.client:
            return (self.client, self.port, 0, 0)
        return (self.client, self.port)


class ForwardedHeaders:
    """Reads forwarding headers from the peers ``trust`` lists, and only from them."""

    __slots__ = ("trust",)

    def __init__(self, trust: ProxyTrust) -> None:
        self.trust = trust

    def __repr__(self) -> str:
        return f"<ForwardedHeaders trust={self.trust!r}>"

    def resolve(self, peer: Any, headers: Headers) -> Forwarded | None:
        """What the headers say, or None when ``peer`` is not trusted or sent none."""
        if not self.trust.trusts(peer):
            return None
        forwarded = headers.get_all("forwarded")
        if forwarded:
            return self._from_forwarded(forwarded)
        chain = _split(headers.get_all("x-forwarded-for"))
        protos = _split(headers.get_all("x-forwarded-proto"))
        if not chain and not protos:
            return None
        client, index = self._client_of(chain)
        scheme = None
        if protos:  # the hop's that named the client, when every hop gave one
            scheme = _scheme(protos[index] if len(protos) == len(chain) else protos[0])
        host, port = _node(client) if client is not None else (None, 0)
        return Forwarded(host, port, scheme)

    def _from_forwarded(self, values: list[str]) -> Forwarded | None:
        elements = [_pairs(element) for element in _split(values)]
        nodes = [element.get("for") for element in elements]
        client, index = self._client_of(nodes)
        host, port = _node(client) if client is not None else (None, 0)
        proto = elements[index].get("proto") if elements else None
        return Forwarded(host, port, _scheme(proto) if proto else None)

    def _client_of(self, chain: Sequence[str | None]) -> tuple[str | None, int]:
        """The first untrusted node from the right (all trusted: the leftmost) and its
        index; an unknown or obfuscated node ends the walk without an address."""
        for index in range(len(chain) - 1, -1, -1):
            node = chain[index]
            host = _node(node)[0] if node is not None else None
            if host is None:
                return None, index
            if index == 0 or not self.trust.trusts(host):
                return node, index
        return None, 0


class ForwardingDispatcher(WrappingDispatcher):
    """Sets ``request.peer`` to the client a trusted proxy names, then runs ``inner``
    (the native App's requests; one call more per request, only when asked for)."""

    __slots__ = ("forwarded",)

    def __init__(self, inner: Dispatcher, forwarded: ForwardedHeaders) -> None:
        super().__init__(inner)
        self.forwarded = forwarded

    def __repr__(self) -> str:
        return f"<ForwardingDispatcher {self.inner!r} {self.forwarded!r}>"

    def request(self, protocol: HttpProtocol, request: Request) -> object:
        said = self.forwarded.resolve(request.peer, request.headers)
        if said is not None:
            request.peer = said.peer(request.peer)
        return self.inner.request(protocol, request)


def _split(values: list[str]) -> list[str]:
    """The comma-separated list items of every field value, stripped, empty ones dropped."""
    return [item.strip() for value in values for item in value.split(",") if item.strip()]


def _pairs(element: str) -> dict[str, str]:
    """One ``Forwarded`` element (``for=...;proto=https``) as lower-case name -> value."""
    pairs: dict[str, str] = {}
    for pair in element.split(";"):
        name, eq, value = pair.strip().partition("=")
        if eq:
            pairs.setdefault(name.strip().lower(), value.strip().strip('"'))
    return pairs


def _node(node: str) -> tuple[str | None, int]:
    """``(address, port)`` of a node (``192.0.2.1``, ``192.0.2.1:80``, ``[2001:db8::1]:80``,
    ``2001:db8::1``); ``(None, 0)`` for ``unknown``, obfuscated names and garbage."""
    host, port = node, ""
    if node.startswith("["):
        host, _, rest = node[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    elif node.count(":") == 1:
        host, _, port = node.partition(":")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None, 0
    number = int(port) if port.isdigit() and int(port) <= 0xFFFF else 0
    return str(address), number


def _scheme(value: str) -> str | None:
    scheme = value.strip().lower()
    return scheme if scheme in SCHEMES else None
