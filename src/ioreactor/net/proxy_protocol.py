"""The PROXY protocol (HAProxy's specification, versions 1 and 2): the header a load
balancer writes at the start of a connection to say which client it relays.

Data flow::

    accept -> ProxyProtocolHandler.on_connection: is the peer in the ProxyTrust list?
           -> first bytes -> parse_header() -> None (need more) | ProxyHeader | error
           -> conn.peer = the client's address -> conn.set_handler(inner)
           -> inner.on_connection(conn) -> the bytes after the header (same read) and
              every later event go to inner directly (the connection's handler now)

Version 1 is one US-ASCII line of at most 107 bytes, CRLF included::

    PROXY TCP4 192.0.2.1 198.51.100.7 56324 443\\r\\n        (or TCP6, or UNKNOWN)

Version 2 is binary: a 16-byte head, then the address block, then TLVs::

    12-byte signature | ver 2, command | family, protocol | length (u16) | length bytes
    \\r\\n\\r\\n\\0\\r\\nQUIT\\n  LOCAL / PROXY   INET/INET6/UNIX   addresses (12 / 36 / 216), TLVs
                                       STREAM/DGRAM

:func:`parse_header` is sans-I/O and incremental: give it what arrived so far (bytes, a
view or a :class:`Buffer`); it returns None until the header is complete, then a
:class:`ProxyHeader` whose ``size`` says how many bytes it took, and raises
:class:`ProxyProtocolError` at the first byte that breaks the specification (a wrong
prefix is refused before the rest arrives). Nothing is allocated from the announced
length: a v2 header above ``max_size`` is refused when its 16-byte head arrives.

The specification forbids guessing whether a header is present: which peers must send
one is configuration, a :class:`ProxyTrust` list.
"""

from __future__ import annotations

import enum
import ipaddress
import logging
import os
import re
import socket
import weakref
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ioreactor.net.buffer import Buffer
from ioreactor.net.counters import Counters
from ioreactor.net.handlers import Handler, reads_in_place

if TYPE_CHECKING:
    from ioreactor.loop.timers import TimerHandle
    from ioreactor.net.connection import TcpConnection

log = logging.getLogger("ioreactor.proxy_protocol")

#: What a version 1 header starts with.
V1_PREFIX = b"PROXY "
#: The longest version 1 line, CRLF included (``PROXY UNKNOWN`` with two IPv6 addresses).
V1_MAX_SIZE = 107
#: What a version 2 header starts with (a NUL at the 5th byte: not a C string).
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
#: The fixed head of a version 2 header: signature, version/command, family, length.
V2_HEAD_SIZE = 16
#: The largest version 2 header the specification allows (the length is a u16).
V2_MAX_SIZE = V2_HEAD_SIZE + 0xFFFF
#: Default limit on a version 2 header's size. Real proxies send well under 1 KiB (the
#: specification designs both versions to fit one 536-byte segment); raise it with
#: ``max_size`` up to :data:`V2_MAX_SIZE` for a proxy that adds large TLVs.
MAX_HEADER_SIZE = 4096
#: Default seconds a trusted peer has to complete its header (the specification asks
#: for at least 3, to cover one TCP retransmission).
HEADER_TIMEOUT = 5.0
#: Longest PP2_TYPE_UNIQUE_ID value.
UNIQUE_ID_MAX = 128

# Version 2 TLV types and the SSL TLV's client flags (section 2.2).
PP2_TYPE_ALPN = 0x01
PP2_TYPE_AUTHORITY = 0x02
PP2_TYPE_CRC32C = 0x03
PP2_TYPE_NOOP = 0x04
PP2_TYPE_UNIQUE_ID = 0x05
PP2_TYPE_SSL = 0x20
PP2_SUBTYPE_SSL_VERSION = 0x21
PP2_SUBTYPE_SSL_CN = 0x22
PP2_SUBTYPE_SSL_CIPHER = 0x23
PP2_SUBTYPE_SSL_SIG_ALG = 0x24
PP2_SUBTYPE_SSL_KEY_ALG = 0x25
PP2_TYPE_NETNS = 0x30
PP2_CLIENT_SSL = 0x01
PP2_CLIENT_CERT_CONN = 0x02
PP2_CLIENT_CERT_SESS = 0x04

#: Registered TLV types that may appear once (NOOP and custom types may repeat).
_SINGLE_TLVS = frozenset(
    {
        PP2_TYPE_ALPN,
        PP2_TYPE_AUTHORITY,
        PP2_TYPE_CRC32C,
        PP2_TYPE_UNIQUE_ID,
        PP2_TYPE_SSL,
        PP2_TYPE_NETNS,
    }
)
#: Version 2 family nibble -> socket family, and the size of its address block.
_FAMILIES = (socket.AF_UNSPEC, socket.AF_INET, socket.AF_INET6, socket.AF_UNIX)
_ADDRESS_SIZES = (0, 12, 36, 216)
#: Version 2 protocol nibble -> socket type (0: unspecified).
_PROTOCOLS: tuple[socket.SocketKind | None, ...] = (None, socket.SOCK_STREAM, socket.SOCK_DGRAM)
_UNIX_NAME_SIZE = 108

_V1_IPV4 = re.compile(r"(?:0|[1-9][0-9]{0,2})(?:\.(?:0|[1-9][0-9]{0,2})){3}")
_V1_IPV6 = re.compile(r"[0-9A-Fa-f:.]{2,45}")
_V1_PORT = re.compile(rb"0|[1-9][0-9]{0,4}")


class ProxyProtocolError(ValueError):
    """A header that breaks the specification; the message names the part."""


class Command(enum.IntEnum):
    """Version 2's command (version 1 headers are always PROXY)."""

    #: The proxy's own connection (a health check): the real endpoints stand.
    LOCAL = 0
    #: A relayed connection: the header carries the client's endpoints.
    PROXY = 1


@dataclass(frozen=True, slots=True)
class SslInfo:
    """The PP2_TYPE_SSL TLV: how the client reached the proxy over TLS."""

    #: PP2_CLIENT_* flags: TLS, a certificate on this connection / on its session.
    client: int
    #: Zero when the client presented a certificate and it was verified.
    verify: int
    version: str | None = None
    cn: str | None = None
    cipher: str | None = None
    sig_alg: str | None = None
    key_alg: str | None = None
    #: Every sub-TLV as (type, value), in order, the unknown ones included.
    tlvs: tuple[tuple[int, bytes], ...] = ()

    @property
    def tls(self) -> bool:
        """The client connected to the proxy over SSL/TLS."""
        return bool(self.client & PP2_CLIENT_SSL)


@dataclass(frozen=True, slots=True)
class ProxyHeader:
    """A parsed header. ``source`` and ``destination`` are socket addresses in the form
    ``accept()`` and ``getsockname()`` give them -- ``(host, port)`` for IPv4,
    ``(host, port, 0, 0)`` for IPv6, a path (``str``, or ``bytes`` for an abstract name)
    for AF_UNIX -- or None when the connection's real endpoints stand (a LOCAL command,
    version 1's UNKNOWN, an unspecified family or protocol)."""

    version: int
    command: Command
    family: socket.AddressFamily
    protocol: socket.SocketKind | None
    source: Any
    destination: Any
    #: Bytes the header took at the start of the stream.
    size: int
    #: Every version 2 TLV as (type, value), in order, the unknown ones included.
    tlvs: tuple[tuple[int, bytes], ...] = ()
    alpn: bytes | None = None
    authority: str | None = None
    unique_id: bytes | None = None
    ssl: SslInfo | None = None
    netns: str | None = None

    @property
    def relayed(self) -> bool:
        """The header names the client: the connection's peer is ``source``."""
        return self.source is not None

    def tlv(self, kind: int) -> bytes | None:
        """The value of the first TLV of type ``kind``, or None."""
        for t, value in self.tlvs:
            if t == kind:
                return value
        return None


# -- parsing ------------------------------------------------------------------------------


def parse_header(
    data: Buffer | bytes | bytearray | memoryview, *, max_size: int = MAX_HEADER_SIZE
) -> ProxyHeader | None:
    """Parse the PROXY header at the start of ``data``: None while it is incomplete, the
    header once it is whole (``size`` bytes; what follows is the proxied stream).

    Nothing is consumed: a caller holding a :class:`Buffer` retrieves ``header.size``.
    Raises :class:`ProxyProtocolError` as soon as the bytes cannot become a valid
    header, including a version 2 header announcing more than ``max_size`` bytes.
    """
    if isinstance(data, Buffer):
        with data.peek() as view:
            return _parse(view, max_size)
    with memoryview(data) as view:
        return _parse(view, max_size)


def _parse(view: memoryview, max_size: int) -> ProxyHeader | None:
    head = bytes(view[:V2_HEAD_SIZE])
    k = min(len(head), len(V2_SIGNATURE))
    if head[:k] == V2_SIGNATURE[:k]:
        return _parse_v2(view, head, max_size) if len(head) == V2_HEAD_SIZE else None
    k = min(len(head), len(V1_PREFIX))
    if head[:k] == V1_PREFIX[:k]:
        return _parse_v1(view) if k == len(V1_PREFIX) else None
    raise ProxyProtocolError(f"not a PROXY protocol header: the stream starts with {head!r}")


def _parse_v1(view: memoryview) -> ProxyHeader | None:
    line = bytes(view[:V1_MAX_SIZE])
    end = line.find(b"\r\n")
    if end < 0:
        # No CRLF yet. A CR as the last byte may be the start of it; any other CR or LF
        # can never end the line.
        _refuse_stray_eol(line[:-1] if line.endswith(b"\r") else line)
        if len(line) >= V1_MAX_SIZE:
            raise ProxyProtocolError(f"PROXY v1: no CRLF in the first {V1_MAX_SIZE} bytes")
        return None
    text = line[:end]
    _refuse_stray_eol(text)
    size = end + 2
    space = text.find(b" ", len(V1_PREFIX))
    proto = text[len(V1_PREFIX) :] if space < 0 else text[len(V1_PREFIX) : space]
    if proto == b"UNKNOWN":
        # The sender could not fill the line: the real endpoints stand; the receiver
        # ignores whatever follows the keyword.
        return ProxyHeader(1, Command.PROXY, socket.AF_UNSPEC, None, None, None, size)
    if proto == b"TCP4":
        family = socket.AF_INET
    elif proto == b"TCP6":
        family = socket.AF_INET6
    else:
        raise ProxyProtocolError(f"PROXY v1: protocol {proto!r} is not TCP4, TCP6 or UNKNOWN")
    fields = text.split(b" ")
    if len(fields) != 6:
        raise ProxyProtocolError(
            f"PROXY v1: {len(fields)} fields; {proto.decode()} takes 6 separated by "
            "single spaces (PROXY, protocol, source, destination, source port, "
            "destination port)"
        )
    src = _v1_address(fields[2], family, "source address")
    dst = _v1_address(fields[3], family, "destination address")
    sport = _v1_port(fields[4], "source port")
    dport = _v1_port(fields[5], "destination port")
    if family == socket.AF_INET:
        source: Any = (src, sport)
        destination: Any = (dst, dport)
    else:
        source, destination = (src, sport, 0, 0), (dst, dport, 0, 0)
    return ProxyHeader(1, Command.PROXY, family, socket.SOCK_STREAM, source, destination, size)


def _refuse_stray_eol(text: bytes) -> None:
    for char, name in ((b"\r", "CR"), (b"\n", "LF")):
        at = text.find(char)
        if at >= 0:
            raise ProxyProtocolError(
                f"PROXY v1: a bare {name} at byte {at}; the line must end with CRLF"
            )


def _v1_address(raw: bytes, family: socket.AddressFamily, what: str) -> str:
    text = raw.decode("ascii", "replace")
    if family == socket.AF_INET:
        if not _V1_IPV4.fullmatch(text) or any(int(part) > 255 for part in text.split(".")):
            raise ProxyProtocolError(
                f"PROXY v1: {what} {text!r} is not an IPv4 address "
                "(four decimal numbers 0-255 without leading zeros)"
            )
        return text
    packed = None
    if _V1_IPV6.fullmatch(text):  # inet_pton alone would take what the spec does not
        try:
            packed = socket.inet_pton(socket.AF_INET6, text)
        except OSError:
            pass
    if packed is None:
        raise ProxyProtocolError(f"PROXY v1: {what} {text!r} is not an IPv6 address")
    return socket.inet_ntop(socket.AF_INET6, packed)


def _v1_port(raw: bytes, what: str) -> int:
    if not _V1_PORT.fullmatch(raw) or int(raw) > 0xFFFF:
        raise ProxyProtocolError(
            f"PROXY v1: {what} {raw.decode('ascii', 'replace')!r} is not a port "
            "(a decimal number 0-65535 without leading zeros)"
        )
    return int(raw)


def _parse_v2(view: memoryview, head: bytes, max_size: int) -> ProxyHeader | None:
    ver_cmd, fam = head[12], head[13]
    if ver_cmd >> 4 != 2:
        raise ProxyProtocolError(f"PROXY v2: version {ver_cmd >> 4} (byte 13 is 0x{ver_cmd:02x})")
    if ver_cmd & 0x0F > 1:
        raise ProxyProtocolError(
            f"PROXY v2: unknown command 0x{ver_cmd & 0x0F:x} (0 is LOCAL, 1 is PROXY)"
        )
    if fam >> 4 >= len(_FAMILIES):
        raise ProxyProtocolError(
            f"PROXY v2: unknown address family 0x{fam >> 4:x} (byte 14 is 0x{fam:02x})"
        )
    if fam & 0x0F >= len(_PROTOCOLS):
        raise ProxyProtocolError(
            f"PROXY v2: unknown transport protocol 0x{fam & 0x0F:x} (byte 14 is 0x{fam:02x})"
        )
    size = V2_HEAD_SIZE + int.from_bytes(head[14:16], "big")
    if size > max_size:
        raise ProxyProtocolError(f"PROXY v2: a {size}-byte header, above the {max_size}-byte limit")
    if len(view) < size:
        return None
    command = Command(ver_cmd & 0x0F)
    family = _FAMILIES[fam >> 4]
    protocol = _PROTOCOLS[fam & 0x0F]
    if command is Command.LOCAL or (protocol is None and family != socket.AF_UNSPEC):
        # LOCAL: the proxy's own connection; the receiver discards the whole block,
        # family included. A known family with an unspecified protocol: the addresses
        # cannot be used, and the block is skipped as the length says.
        return ProxyHeader(2, command, family, protocol, None, None, size)
    raw = bytes(view[:size])
    start = V2_HEAD_SIZE + _ADDRESS_SIZES[fam >> 4]
    if start > size:
        raise ProxyProtocolError(
            f"PROXY v2: a {size - V2_HEAD_SIZE}-byte address block; {family.name} needs "
            f"{start - V2_HEAD_SIZE}"
        )
    source, destination = _v2_addresses(family, raw[V2_HEAD_SIZE:start])
    fields = _tlv_fields(raw, start)
    return ProxyHeader(2, command, family, protocol, source, destination, size, **fields)


def _v2_addresses(family: socket.AddressFamily, block: bytes) -> tuple[Any, Any]:
    if family == socket.AF_INET:
        sport, dport = int.from_bytes(block[8:10], "big"), int.from_bytes(block[10:12], "big")
        return (
            (socket.inet_ntop(socket.AF_INET, block[0:4]), sport),
            (socket.inet_ntop(socket.AF_INET, block[4:8]), dport),
        )
    if family == socket.AF_INET6:
        sport, dport = int.from_bytes(block[32:34], "big"), int.from_bytes(block[34:36], "big")
        return (
            (socket.inet_ntop(socket.AF_INET6, block[0:16]), sport, 0, 0),
            (socket.inet_ntop(socket.AF_INET6, block[16:32]), dport, 0, 0),
        )
    if family == socket.AF_UNIX:
        return _unix_name(block[:_UNIX_NAME_SIZE]), _unix_name(block[_UNIX_NAME_SIZE:])
    return None, None  # AF_UNSPEC: no addresses, the TLVs start at once


def _unix_name(raw: bytes) -> str | bytes:
    """A ``sun_path`` field as ``accept()`` shows it: a path, or bytes for an abstract
    name (its length is not transmitted: trailing NULs are taken as padding)."""
    if raw[:1] == b"\0":
        name = raw.rstrip(b"\0")
        return b"\0" + name[1:] if name else ""
    return os.fsdecode(raw.split(b"\0", 1)[0])


def _read_tlvs(raw: bytes, start: int, end: int, where: str) -> list[tuple[int, int, bytes]]:
    """The TLVs in ``raw[start:end]`` as (type, offset of the value, value)."""
    tlvs = []
    pos = start
    while pos < end:
        if end - pos < 3:
            raise ProxyProtocolError(
                f"PROXY v2: {end - pos} stray byte(s) after the last {where} "
                "(a TLV takes at least 3)"
            )
        kind = raw[pos]
        length = int.from_bytes(raw[pos + 1 : pos + 3], "big")
        pos += 3
        if pos + length > end:
            raise ProxyProtocolError(
                f"PROXY v2: {where} 0x{kind:02x} of {length} bytes runs past the end "
                f"of its block by {pos + length - end}"
            )
        tlvs.append((kind, pos, raw[pos : pos + length]))
        pos += length
    return tlvs


def _text(value: bytes, what: str, encoding: str) -> str:
    try:
        return value.decode(encoding)
    except UnicodeDecodeError:
        raise ProxyProtocolError(f"PROXY v2: the {what} TLV is not {encoding}: {value!r}") from None


def _tlv_fields(raw: bytes, start: int) -> dict[str, Any]:
    """The TLVs of ``raw[start:]``, validated and decoded into ProxyHeader fields."""
    fields: dict[str, Any] = {}
    tlvs: list[tuple[int, bytes]] = []
    for kind, offset, value in _read_tlvs(raw, start, len(raw), "TLV"):
        if kind in _SINGLE_TLVS and any(kind == t for t, _ in tlvs):
            raise ProxyProtocolError(f"PROXY v2: TLV 0x{kind:02x} appears twice")
        tlvs.append((kind, value))
        if kind == PP2_TYPE_ALPN:
            fields["alpn"] = value
        elif kind == PP2_TYPE_AUTHORITY:
            fields["authority"] = _text(value, "AUTHORITY", "utf-8")
        elif kind == PP2_TYPE_CRC32C:
            _check_crc32c(raw, offset, value)
        elif kind == PP2_TYPE_UNIQUE_ID:
            if len(value) > UNIQUE_ID_MAX:
                raise ProxyProtocolError(
                    f"PROXY v2: a {len(value)}-byte UNIQUE_ID, above {UNIQUE_ID_MAX}"
                )
            fields["unique_id"] = value
        elif kind == PP2_TYPE_SSL:
            fields["ssl"] = _ssl_info(value)
        elif kind == PP2_TYPE_NETNS:
            fields["netns"] = _text(value, "NETNS", "ascii")
    fields["tlvs"] = tuple(tlvs)
    return fields


def _check_crc32c(raw: bytes, offset: int, value: bytes) -> None:
    if len(value) != 4:
        raise ProxyProtocolError(f"PROXY v2: a {len(value)}-byte CRC32C TLV (it has 4)")
    zeroed = raw[:offset] + b"\0\0\0\0" + raw[offset + 4 :]
    expected = int.from_bytes(value, "big")
    actual = crc32c(zeroed)
    if actual != expected:
        raise ProxyProtocolError(
            f"PROXY v2: CRC32C mismatch (header says 0x{expected:08x}, bytes give 0x{actual:08x})"
        )


_SSL_STRINGS = {
    PP2_SUBTYPE_SSL_VERSION: ("version", "ascii"),
    PP2_SUBTYPE_SSL_CN: ("cn", "utf-8"),
    PP2_SUBTYPE_SSL_CIPHER: ("cipher", "ascii"),
    PP2_SUBTYPE_SSL_SIG_ALG: ("sig_alg", "ascii"),
    PP2_SUBTYPE_SSL_KEY_ALG: ("key_alg", "ascii"),
}


def _ssl_info(value: bytes) -> SslInfo:
    if len(value) < 5:
        raise ProxyProtocolError(
            f"PROXY v2: a {len(value)}-byte SSL TLV (client and verify take 5)"
        )
    fields: dict[str, Any] = {}
    subs = []
    for kind, _, sub in _read_tlvs(value, 5, len(value), "SSL sub-TLV"):
        subs.append((kind, sub))
        known = _SSL_STRINGS.get(kind)
        if known is not None:
            name, encoding = known
            if name in fields:
                raise ProxyProtocolError(f"PROXY v2: SSL sub-TLV 0x{kind:02x} appears twice")
            fields[name] = _text(sub, f"SSL {name}", encoding)
    return SslInfo(value[0], int.from_bytes(value[1:5], "big"), tlvs=tuple(subs), **fields)


def _crc32c_table() -> tuple[int, ...]:
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return tuple(table)


_CRC32C_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli, RFC 4960 appendix B), as PP2_TYPE_CRC32C uses it.

    Pure Python (about a microsecond a byte): it runs only on headers that carry the
    TLV, which are at most ``max_size`` bytes and come from trusted peers.
    """
    table = _CRC32C_TABLE
    crc = 0xFFFFFFFF
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


# -- who may send a header ----------------------------------------------------------------


IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class ProxyTrust:
    """The peers allowed to send a PROXY header (and, for HTTP, forwarding headers).

    Entries: addresses or networks (``"127.0.0.1"``, ``"10.0.0.0/8"``, ``"::1"``,
    ``"fd00::/8"``), ``"unix"`` for Unix-domain peers, ``"*"`` for any peer. A string is
    split on commas (the form of a command-line flag). An IPv4-mapped IPv6 peer
    (``::ffff:10.1.2.3``, from a dual-stack listener) matches the IPv4 networks.
    """

    __slots__ = ("any", "networks", "unix")

    def __init__(self, entries: str | Iterable[str]) -> None:
        if isinstance(entries, str):
            entries = entries.split(",")
        networks: list[IPNetwork] = []
        self.any = False
        self.unix = False
        for raw in entries:
            entry = raw.strip()
            if entry == "*":
                self.any = True
            elif entry == "unix":
                self.unix = True
            else:
                networks.append(_network(entry))
        self.networks: tuple[IPNetwork, ...] = tuple(networks)

    def __repr__(self) -> str:
        entries = [str(n) for n in self.networks]
        entries += ["unix"] * self.unix + ["*"] * self.any
        return f"ProxyTrust({entries!r})"

    def __contains__(self, peer: Any) -> bool:
        return self.trusts(peer)

    def trusts(self, peer: Any) -> bool:
        """Whether ``peer`` (a socket address as ``accept()`` gives it, or a bare IP
        address string) may send a header."""
        if self.any:
            return True
        host = peer[0] if isinstance(peer, tuple) else peer
        if isinstance(host, bytes) or not host or "/" in host:
            return self.unix  # an AF_UNIX peer: a path, an abstract name, or unnamed
        try:
            address = ipaddress.ip_address(host.partition("%")[0])
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in network for network in self.networks)


def _network(entry: str) -> IPNetwork:
    try:
        return ipaddress.ip_network(entry)
    except ValueError as exc:
        if "host bits set" in str(exc):
            fixed = ipaddress.ip_network(entry, strict=False)
            raise ValueError(f"trusted network {entry!r} has host bits set; {fixed}?") from None
        raise ValueError(
            f"trusted proxy {entry!r} is not an IP address, a network (10.0.0.0/8), 'unix' or '*'"
        ) from None


# -- the handler --------------------------------------------------------------------------


class ProxyProtocolStats(Counters):
    """Counters of a :class:`ProxyProtocolHandler` (read them from any thread)."""

    __slots__ = ("abandoned", "direct", "local", "malformed", "relayed", "timeouts", "untrusted")

    #: Headers that named the client: the connection's peer was replaced.
    relayed: int
    #: Valid headers that keep the real endpoints (LOCAL, UNKNOWN, unspecified).
    local: int
    #: Untrusted peers served without a header (``required=False``).
    direct: int
    #: Connections refused: a peer outside the trust list (``required=True``).
    untrusted: int
    #: Connections closed for a header that breaks the specification.
    malformed: int
    #: Connections closed for a header not complete within the timeout.
    timeouts: int
    #: Trusted peers that closed before sending a byte (a port probe).
    abandoned: int


class _Waiting:
    """``conn.context`` until the header is read; the inner handler never sees it."""

    __slots__ = ("rejected", "timer")

    def __init__(self, timer: TimerHandle | None, rejected: bool = False) -> None:
        self.timer = timer
        #: The connection is being closed by this handler (already counted and logged).
        self.rejected = rejected


class ProxyProtocolHandler(Handler):
    """Reads the PROXY header of each connection, then hands it to ``inner``.

    A peer in ``trust`` must start with a header (version 1 or 2). Once it is whole,
    ``conn.peer`` becomes the client's address (a LOCAL or UNKNOWN header keeps the
    real one), ``inner.on_connection`` runs, and the bytes after the header -- in the
    same read -- and every later event go to ``inner``. The proxy's own address stays
    available as :meth:`proxy_peer`, the header as :meth:`header`.

    A peer outside ``trust`` is refused at once when ``required`` (the specification's
    mode: this listener is for the proxies only), and served directly, its bytes never
    read as a header, when not (one port for proxies and direct clients).

    A malformed header, an untrusted peer or a header not complete within ``timeout``
    seconds closes that connection only, with one log line and a count in :attr:`stats`.

    At the hand-over the connection's handler becomes ``inner``
    (:meth:`TcpConnection.set_handler`): from then on this handler is out of the path,
    and a relayed connection costs nothing per event. Per-connection state:
    ``conn.context`` until the hand-over (``inner`` gets it empty), then a record keyed
    by the socket that lives as long as the connection. A server shutdown still calls
    the server's handler (this one): :meth:`on_shutdown` passes a relayed connection
    on to ``inner``.
    """

    def __init__(
        self,
        inner: Handler,
        trust: ProxyTrust,
        *,
        required: bool = True,
        timeout: float = HEADER_TIMEOUT,
        max_size: int = MAX_HEADER_SIZE,
    ) -> None:
        if timeout <= 0:
            raise ValueError(f"timeout must be > 0 seconds, got {timeout}")
        if not V2_HEAD_SIZE <= max_size <= V2_MAX_SIZE:
            raise ValueError(f"max_size must be in {V2_HEAD_SIZE}..{V2_MAX_SIZE}, got {max_size}")
        self.inner = inner
        self.trust = trust
        self.required = required
        self.timeout = timeout
        self.max_size = max_size
        self.stats = ProxyProtocolStats()
        # (proxy's address, header) per relayed connection, keyed by its socket: the
        # record goes with the connection, with no clean-up step to forget.
        self._relays: weakref.WeakKeyDictionary[socket.socket, tuple[Any, ProxyHeader]] = (
            weakref.WeakKeyDictionary()
        )
        self._inner_reads_in_place = reads_in_place(inner)

    def __repr__(self) -> str:
        return f"<ProxyProtocolHandler {self.inner!r} trust={self.trust!r}>"

    # -- what the inner handler may ask -------------------------------------------------

    def header(self, conn: TcpConnection) -> ProxyHeader | None:
        """The connection's PROXY header; None for a direct (untrusted) peer."""
        relay = self._relays.get(conn.sock)
        return relay[1] if relay is not None else None

    def proxy_peer(self, conn: TcpConnection) -> Any:
        """The address of the proxy that relayed the connection; None when direct."""
        relay = self._relays.get(conn.sock)
        return relay[0] if relay is not None else None

    # -- before the header --------------------------------------------------------------

    def on_connection(self, conn: TcpConnection) -> None:
        if self.trust.trusts(conn.peer):
            timer = conn.loop.call_later(self.timeout, self._timed_out, conn)
            conn.context = _Waiting(timer)
        elif self.required:
            self.stats.untrusted += 1
            log.warning("PROXY protocol: %s is not a trusted proxy; closing", _text_of(conn.peer))
            conn.context = _Waiting(None, rejected=True)
            conn.force_close()
        else:
            self.stats.direct += 1
            conn.set_handler(self.inner)
            self.inner.on_connection(conn)

    def _read_header(self, conn: TcpConnection, data: memoryview) -> int:
        try:
            header = parse_header(data, max_size=self.max_size)
        except ProxyProtocolError as exc:
            self._reject(conn, "malformed", str(exc))
            return len(data)
        if header is None:
            return 0  # kept in conn.input: on_message sees it with the next bytes
        self._hand_over(conn, header)
        used = header.size
        if used == len(data) or not conn.connected:
            return len(data)
        if not self._inner_reads_in_place:
            return used  # the rest goes to conn.input, then to inner.on_message
        rest = len(data) - used
        taken = self.inner.on_read(conn, data[used:])
        if not 0 <= taken <= rest:  # (the connection checks only the sum)
            raise ValueError(f"on_read returned {taken!r}, not a count in 0..{rest}")
        return used + taken

    def _header_from_buffer(self, conn: TcpConnection, buffer: Buffer) -> None:
        try:
            header = parse_header(buffer, max_size=self.max_size)
        except ProxyProtocolError as exc:
            self._reject(conn, "malformed", str(exc))
            return
        if header is None:
            return
        buffer.retrieve(header.size)
        self._hand_over(conn, header)
        # What follows the header stays in ``buffer``: the connection hands it to the
        # new handler's on_message as soon as this call returns.

    def _hand_over(self, conn: TcpConnection, header: ProxyHeader) -> None:
        """The header is whole: the connection becomes the client's, served by inner."""
        waiting: _Waiting = conn.context
        if waiting.timer is not None:
            waiting.timer.cancel()
        self._relays[conn.sock] = (conn.peer, header)
        if header.relayed:
            conn.peer = header.source
            self.stats.relayed += 1
        else:
            self.stats.local += 1
        conn.context = None
        conn.set_handler(self.inner)
        self.inner.on_connection(conn)

    def _reject(self, conn: TcpConnection, counter: str, why: str) -> None:
        setattr(self.stats, counter, getattr(self.stats, counter) + 1)
        log.warning("PROXY protocol: closing the connection from %s: %s", _text_of(conn.peer), why)
        waiting: _Waiting = conn.context
        waiting.rejected = True
        if waiting.timer is not None:
            waiting.timer.cancel()
            waiting.timer = None
        conn.force_close()

    def _timed_out(self, conn: TcpConnection) -> None:
        waiting = conn.context
        if type(waiting) is _Waiting and not waiting.rejected and conn.connected:
            waiting.timer = None
            got = conn.input.readable_bytes
            self._reject(
                conn, "timeouts", f"no complete header after {self.timeout:g} s ({got} bytes)"
            )

    # -- events before the hand-over (after it, they go to inner directly) ------------

    def on_read(self, conn: TcpConnection, data: memoryview) -> int:
        return self._read_header(conn, data)

    def on_message(self, conn: TcpConnection, buffer: Buffer) -> None:
        self._header_from_buffer(conn, buffer)

    def on_eof(self, conn: TcpConnection) -> bool:
        waiting: _Waiting = conn.context
        got = conn.input.readable_bytes
        if got and not waiting.rejected:
            self._reject(conn, "malformed", f"the peer closed after {got} bytes of a header")
        return False

    def on_shutdown(self, conn: TcpConnection) -> None:
        if conn.handler is self:
            conn.close()  # still waiting for its header
        else:
            conn.handler.on_shutdown(conn)

    def on_close(self, conn: TcpConnection) -> None:
        waiting: _Waiting = conn.context
        if waiting.timer is not None:
            waiting.timer.cancel()
            waiting.timer = None
        if not waiting.rejected:
            self.stats.abandoned += 1
            log.debug("PROXY protocol: %s closed before sending a header", _text_of(conn.peer))


def _text_of(peer: Any) -> str:
    """A peer address for a log line: ``host:port``, ``[v6]:port`` or the Unix name."""
    if isinstance(peer, tuple):
        host, port = peer[0], peer[1]
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return repr(peer) if isinstance(peer, bytes) else peer or "(unnamed Unix socket)"
