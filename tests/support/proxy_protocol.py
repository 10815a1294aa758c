"""The sender's side of the PROXY protocol, for tests: a fake proxy, the parser's
round-trip properties, the load-balancer cluster tests.

:func:`encode` writes any :class:`ProxyHeader` the parser can return (``size`` is
ignored); :func:`encode_v1` and :func:`encode_v2` take the parts, and :func:`tlv` and
:func:`ssl_value` build TLVs, so a test can also write headers the parser must refuse.
A CRC32C TLV (four placeholder bytes) gets the checksum of the finished header.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable
from typing import Any

from ioreactor.net.proxy_protocol import (
    PP2_SUBTYPE_SSL_CIPHER,
    PP2_SUBTYPE_SSL_CN,
    PP2_SUBTYPE_SSL_KEY_ALG,
    PP2_SUBTYPE_SSL_SIG_ALG,
    PP2_SUBTYPE_SSL_VERSION,
    PP2_TYPE_CRC32C,
    V2_HEAD_SIZE,
    V2_SIGNATURE,
    Command,
    ProxyHeader,
    SslInfo,
    crc32c,
)

_FAMILY_NIBBLES = {socket.AF_UNSPEC: 0, socket.AF_INET: 1, socket.AF_INET6: 2, socket.AF_UNIX: 3}
_PROTOCOL_NIBBLES = {None: 0, socket.SOCK_STREAM: 1, socket.SOCK_DGRAM: 2}


def encode(header: ProxyHeader) -> bytes:
    """The bytes of ``header`` in its version."""
    if header.version == 1:
        return encode_v1(header.family, header.source, header.destination)
    return encode_v2(
        command=header.command,
        family=header.family,
        protocol=header.protocol,
        source=header.source,
        destination=header.destination,
        tlvs=header.tlvs,
    )


def encode_v1(family: int, source: Any = None, destination: Any = None) -> bytes:
    """``PROXY TCP4|TCP6 src dst sport dport\\r\\n``, or ``PROXY UNKNOWN\\r\\n`` for
    AF_UNSPEC."""
    if family == socket.AF_UNSPEC:
        return b"PROXY UNKNOWN\r\n"
    proto = "TCP4" if family == socket.AF_INET else "TCP6"
    line = f"PROXY {proto} {source[0]} {destination[0]} {source[1]} {destination[1]}\r\n"
    return line.encode("ascii")


def encode_v2(
    *,
    command: int = Command.PROXY,
    family: int = socket.AF_INET,
    protocol: int | None = socket.SOCK_STREAM,
    source: Any = None,
    destination: Any = None,
    tlvs: Iterable[tuple[int, bytes]] = (),
    version: int = 2,
) -> bytes:
    """A version 2 header: the address block from ``source`` and ``destination``
    (socket addresses; none for AF_UNSPEC or when they are None), then ``tlvs``."""
    block = b""
    if source is not None and family != socket.AF_UNSPEC:
        block = _address_block(family, source, destination)
    body = block + b"".join(tlv(kind, value) for kind, value in tlvs)
    ver_cmd = version << 4 | int(command)
    fam = _FAMILY_NIBBLES[socket.AddressFamily(family)] << 4 | _PROTOCOL_NIBBLES[protocol]
    raw = V2_SIGNATURE + bytes([ver_cmd, fam]) + len(body).to_bytes(2, "big") + body
    return _fill_crc32c(raw, V2_HEAD_SIZE + len(block))


def tlv(kind: int, value: bytes) -> bytes:
    return bytes([kind]) + len(value).to_bytes(2, "big") + value


def ssl_value(info: SslInfo) -> bytes:
    """The value of a PP2_TYPE_SSL TLV: client flags, verify, then the sub-TLVs (the
    named strings first, then ``info.tlvs``)."""
    subs = [
        (PP2_SUBTYPE_SSL_VERSION, info.version),
        (PP2_SUBTYPE_SSL_CN, info.cn),
        (PP2_SUBTYPE_SSL_CIPHER, info.cipher),
        (PP2_SUBTYPE_SSL_SIG_ALG, info.sig_alg),
        (PP2_SUBTYPE_SSL_KEY_ALG, info.key_alg),
    ]
    named = b"".join(tlv(kind, text.encode()) for kind, text in subs if text is not None)
    rest = b"".join(tlv(kind, value) for kind, value in info.tlvs)
    return bytes([info.client]) + info.verify.to_bytes(4, "big") + named + rest


def _address_block(family: int, source: Any, destination: Any) -> bytes:
    if family == socket.AF_UNIX:
        return _sun_path(source) + _sun_path(destination)
    size = 4 if family == socket.AF_INET else 16
    hosts = b"".join(socket.inet_pton(family, a[0]) for a in (source, destination))
    assert len(hosts) == 2 * size
    return hosts + source[1].to_bytes(2, "big") + destination[1].to_bytes(2, "big")


def _sun_path(name: str | bytes) -> bytes:
    raw = name if isinstance(name, bytes) else os.fsencode(name)
    return raw.ljust(108, b"\0")


def _fill_crc32c(raw: bytes, start: int) -> bytes:
    """Put the checksum into a 4-byte CRC32C TLV, if the header has one."""
    pos = start
    while pos + 3 <= len(raw):
        kind, length = raw[pos], int.from_bytes(raw[pos + 1 : pos + 3], "big")
        if kind == PP2_TYPE_CRC32C and length == 4:
            zeroed = raw[: pos + 3] + bytes(4) + raw[pos + 7 :]
            return zeroed[: pos + 3] + crc32c(zeroed).to_bytes(4, "big") + zeroed[pos + 7 :]
        pos += 3 + length
    return raw
