"""Parsing of endpoint addresses: ``HOST:PORT``, ``tcp://HOST:PORT``, ``[v6]:PORT``.

Every API and CLI flag takes the same strings; errors name the part that is wrong.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass


class AddressError(ValueError):
    """An address string that cannot be parsed; the message names the bad part."""


@dataclass(frozen=True)
class Address:
    """A parsed endpoint: ``kind`` is the transport, ``family`` the socket family."""

    kind: str
    host: str
    port: int
    family: socket.AddressFamily

    @property
    def sockaddr(self) -> tuple[str, int]:
        return (self.host, self.port)

    def __str__(self) -> str:
        host = f"[{self.host}]" if self.family == socket.AF_INET6 else self.host
        return f"{self.kind}://{host}:{self.port}"


def _split_host_port(text: str, original: str) -> tuple[str, int]:
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise AddressError(f"{original!r}: IPv6 host is missing its closing ']'")
        host, rest = text[1:end], text[end + 1 :]
        if not rest.startswith(":"):
            raise AddressError(f"{original!r}: expected ':PORT' after ']'")
        port_text = rest[1:]
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep:
            raise AddressError(f"{original!r}: missing ':PORT'")
        if ":" in host:
            raise AddressError(f"{original!r}: an IPv6 host must be written in brackets: [{host}]")
    if not port_text.isdigit():
        raise AddressError(f"{original!r}: port {port_text!r} is not a number")
    port = int(port_text)
    if not 0 <= port <= 65535:
        raise AddressError(f"{original!r}: port {port} is out of range 0-65535")
    return host, port


def _family_of(host: str, original: str) -> socket.AddressFamily:
    if not host:
        raise AddressError(f"{original!r}: missing host")
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, host)
            return family
        except OSError:
            continue
    if host == "localhost":
        return socket.AF_INET
    if all(c.isalnum() or c in "-." for c in host):
        return socket.AF_INET  # a name: resolved at bind/connect time
    raise AddressError(f"{original!r}: host {host!r} is not an IP address or a host name")


def parse_address(text: str, default_kind: str = "tcp") -> Address:
    """Parse ``[tcp://]HOST:PORT`` or ``[tcp://][V6]:PORT``."""
    original = text
    kind = default_kind
    if "://" in text:
        kind, _, text = text.partition("://")
        if kind != "tcp":
            raise AddressError(f"{original!r}: unknown scheme {kind!r}")
    host, port = _split_host_port(text, original)
    return Address(kind, host, port, _family_of(host, original))


def to_address(value: str | Address | tuple[str, int]) -> Address:
    """Accept an address in any of the forms the APIs take."""
    if isinstance(value, Address):
        return value
    if isinstance(value, tuple):
        host, port = value
        return Address("tcp", host, port, _family_of(host, repr(value)))
    return parse_address(value)
