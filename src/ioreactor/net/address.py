"""One address syntax for every API and CLI flag.

=============================  ==========================================
``HOST:PORT``                  TCP (or the caller's default kind)
``tcp://HOST:PORT``            TCP
``[V6ADDR]:PORT``              IPv6, brackets required (``[::]:7000``)
``udp://HOST:PORT``            UDP
``unix:///abs/path``           Unix-domain stream socket file
``unix-dgram:///abs/path``     Unix-domain datagram socket file
``unix://@name``               Linux abstract name (no file; also ``unix-dgram://@name``)
=============================  ==========================================

Errors are :class:`AddressError` and name the part that is wrong: the scheme, the host,
the port and its range, a relative path, a path that does not fit ``sun_path``.
"""

from __future__ import annotations

import os
import socket
import sys
from dataclasses import dataclass
from typing import Any

#: Transports, each with the socket type it uses.
SOCKET_TYPES: dict[str, socket.SocketKind] = {
    "tcp": socket.SOCK_STREAM,
    "udp": socket.SOCK_DGRAM,
    "unix": socket.SOCK_STREAM,
    "unix-dgram": socket.SOCK_DGRAM,
}
KINDS = tuple(SOCKET_TYPES)
STREAM_KINDS = ("tcp", "unix")
DATAGRAM_KINDS = ("udp", "unix-dgram")
UNIX_KINDS = ("unix", "unix-dgram")
#: ``sizeof(sockaddr_un.sun_path)`` on Linux: the path's bytes plus the terminating NUL.
SUN_PATH_MAX = 108
#: A DNS name (RFC 1035): at most 253 characters, labels of 1-63.
HOST_NAME_MAX = 253

_IS_LINUX = sys.platform.startswith("linux")


class AddressError(ValueError):
    """An address string that cannot be parsed; the message names the bad part."""


@dataclass(frozen=True)
class Address:
    """A parsed endpoint: ``kind`` is the transport, ``family`` the socket family.

    IP kinds use ``host`` and ``port``; Unix kinds use ``path`` (an absolute file path,
    or ``@name`` for a Linux abstract name).
    """

    kind: str
    host: str
    port: int
    family: socket.AddressFamily
    path: str = ""

    @classmethod
    def unix(cls, path: str, kind: str = "unix") -> Address:
        """A Unix-domain address, validated like ``unix://`` strings."""
        if kind not in UNIX_KINDS:
            raise AddressError(f"{kind!r} is not a Unix kind ({', '.join(UNIX_KINDS)})")
        original = f"{kind}://{path}"
        _check_unix_path(path, original)
        return cls(kind, "", 0, socket.AF_UNIX, path)

    @property
    def sockaddr(self) -> tuple[str, int] | str:
        """What ``bind``/``connect``/``sendto`` take for this address."""
        if self.family == socket.AF_UNIX:
            return "\0" + self.path[1:] if self.path.startswith("@") else self.path
        return (self.host, self.port)

    @property
    def socktype(self) -> socket.SocketKind:
        return SOCKET_TYPES[self.kind]

    @property
    def is_stream(self) -> bool:
        return SOCKET_TYPES[self.kind] == socket.SOCK_STREAM

    @property
    def is_unix(self) -> bool:
        return self.family == socket.AF_UNIX

    @property
    def is_abstract(self) -> bool:
        """A Linux abstract name: no file, gone when its last socket closes."""
        return self.family == socket.AF_UNIX and self.path.startswith("@")

    def __str__(self) -> str:
        if self.family == socket.AF_UNIX:
            return f"{self.kind}://{self.path}"
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
    if not port_text:
        raise AddressError(f"{original!r}: missing port after ':'")
    if not (port_text.isascii() and port_text.isdigit()):
        raise AddressError(f"{original!r}: port {port_text!r} is not a number")
    port = int(port_text)
    if not 0 <= port <= 65535:
        raise AddressError(f"{original!r}: port {port} is out of range 0-65535")
    return host, port


def _is_host_name(host: str) -> bool:
    if len(host) > HOST_NAME_MAX or not host.isascii():
        return False
    labels = host[:-1].split(".") if host.endswith(".") else host.split(".")
    return all(
        0 < len(label) <= 63
        and label[0] != "-"
        and label[-1] != "-"
        and all(c.isalnum() or c == "-" for c in label)
        for label in labels
    )


def _family_of(host: str, original: str) -> socket.AddressFamily:
    if not host:
        raise AddressError(f"{original!r}: missing host (use 0.0.0.0 or [::] for every interface)")
    ip, _, zone = host.partition("%")
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, ip)
        except OSError:
            continue
        if zone and (family != socket.AF_INET6 or not zone.isprintable()):
            raise AddressError(f"{original!r}: host {host!r} has an invalid zone")
        if "%" in host and not zone:
            raise AddressError(f"{original!r}: host {host!r} has an empty zone after '%'")
        return family
    if "%" not in host and _is_host_name(host):
        return socket.AF_INET  # a name: resolved at bind/connect time
    raise AddressError(f"{original!r}: host {host!r} is not an IP address or a host name")


def _check_unix_path(path: str, original: str) -> None:
    if not path:
        raise AddressError(f"{original!r}: missing path (unix:///abs/path or unix://@name)")
    if "\0" in path:
        raise AddressError(f"{original!r}: path contains a NUL byte")
    if path.startswith("@"):
        if not _IS_LINUX:
            raise AddressError(f"{original!r}: abstract names (@name) exist on Linux only")
        size = len(os.fsencode(path))  # the leading NUL takes the '@''s place
        if size == 1:
            raise AddressError(f"{original!r}: abstract name after '@' is empty")
        if size > SUN_PATH_MAX:
            raise AddressError(
                f"{original!r}: abstract name is {size - 1} bytes; sun_path holds "
                f"{SUN_PATH_MAX - 1} after its leading NUL"
            )
        return
    if not path.startswith("/"):
        raise AddressError(
            f"{original!r}: path {path!r} is relative; write an absolute path "
            f"(unix:///abs/path: three slashes)"
        )
    if path.endswith("/"):
        raise AddressError(f"{original!r}: path {path!r} names a directory, not a socket file")
    size = len(os.fsencode(path))
    if size + 1 > SUN_PATH_MAX:
        raise AddressError(
            f"{original!r}: path is {size} bytes; sun_path holds {SUN_PATH_MAX} bytes "
            f"including the terminating NUL, so at most {SUN_PATH_MAX - 1}"
        )


def parse_address(text: str, default_kind: str = "tcp") -> Address:
    """Parse any form in the module docstring; ``default_kind`` applies when no scheme."""
    original = text
    kind = default_kind
    if "://" in text:
        kind, _, text = text.partition("://")
        if kind not in SOCKET_TYPES:
            raise AddressError(
                f"{original!r}: unknown scheme {kind + '://'!r} (known: "
                + ", ".join(k + "://" for k in KINDS)
                + ")"
            )
    elif kind not in SOCKET_TYPES:
        raise AddressError(f"unknown default kind {kind!r} (known: {', '.join(KINDS)})")
    if kind in UNIX_KINDS:
        _check_unix_path(text, original)
        return Address(kind, "", 0, socket.AF_UNIX, text)
    if text.startswith("/") or text.startswith("@"):
        raise AddressError(
            f"{original!r}: a Unix socket needs its scheme: unix://{text} or unix-dgram://{text}"
        )
    host, port = _split_host_port(text, original)
    return Address(kind, host, port, _family_of(host, original))


def to_address(
    value: str | Address | tuple[str, int],
    *,
    default_kind: str = "tcp",
    kinds: tuple[str, ...] = STREAM_KINDS,
) -> Address:
    """Accept an address in any of the forms the APIs take; ``kinds`` are the ones allowed.

    The default suits stream servers and clients (``tcp``/``unix``): giving one a
    ``udp://`` address is an error rather than a stream socket on a UDP port.
    """
    if isinstance(value, Address):
        address = value
    elif isinstance(value, tuple):
        host, port = value
        if not isinstance(port, int) or not 0 <= port <= 65535:
            raise AddressError(f"{value!r}: port {port!r} is out of range 0-65535")
        address = Address(default_kind, host, port, _family_of(host, repr(value)))
    else:
        address = parse_address(value, default_kind)
    if address.kind not in kinds:
        raise AddressError(
            f"{str(address)!r}: a {address.kind} address, but this API takes "
            + " or ".join(k + "://" for k in kinds)
        )
    return address


def format_sockname(kind: str, sockname: Any) -> str:
    """A bound socket's address in the module's syntax (e.g. after binding port 0)."""
    if kind in UNIX_KINDS:
        if isinstance(sockname, bytes):  # Linux returns abstract names as bytes
            name = (
                "@" + os.fsdecode(sockname[1:]) if sockname[:1] == b"\0" else os.fsdecode(sockname)
            )
        else:
            name = "@" + sockname[1:] if sockname.startswith("\0") else sockname
        return f"{kind}://{name}"
    host, port = sockname[0], sockname[1]
    return f"{kind}://[{host}]:{port}" if ":" in host else f"{kind}://{host}:{port}"
