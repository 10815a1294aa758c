"""The PROXY protocol parser and trust list: every example of HAProxy's specification
split at every byte, hypothesis round-trips through the test encoder, every malformed
case with the part its error names.

The handler on a real server: test_proxy_protocol_handler.py; behind a real HAProxy:
test_proxy_protocol_haproxy.py.
"""

from __future__ import annotations

import socket
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ioreactor.net.buffer import Buffer
from ioreactor.net.proxy_protocol import (
    MAX_HEADER_SIZE,
    PP2_CLIENT_CERT_CONN,
    PP2_CLIENT_SSL,
    PP2_TYPE_ALPN,
    PP2_TYPE_AUTHORITY,
    PP2_TYPE_CRC32C,
    PP2_TYPE_NETNS,
    PP2_TYPE_NOOP,
    PP2_TYPE_SSL,
    PP2_TYPE_UNIQUE_ID,
    V1_MAX_SIZE,
    V2_MAX_SIZE,
    V2_SIGNATURE,
    Command,
    ProxyHeader,
    ProxyProtocolError,
    ProxyTrust,
    SslInfo,
    crc32c,
    parse_header,
)
from support.proxy_protocol import encode, encode_v1, encode_v2, ssl_value, tlv

INET, INET6, UNIX, UNSPEC = socket.AF_INET, socket.AF_INET6, socket.AF_UNIX, socket.AF_UNSPEC
STREAM, DGRAM = socket.SOCK_STREAM, socket.SOCK_DGRAM
MAX6 = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"
#: What follows the header in the examples: the proxied stream, which must be left alone.
REQUEST = b"GET / HTTP/1.1\r\nHost: 192.168.0.11\r\n\r\n"


def v2(
    ver_cmd: int, fam: int, body: bytes, length: int | None = None, sig: bytes = V2_SIGNATURE
) -> bytes:
    """A raw version 2 header, any byte wrong on purpose."""
    size = len(body) if length is None else length
    return sig + bytes([ver_cmd, fam]) + size.to_bytes(2, "big") + body


TCP4_BLOCK = bytes([192, 168, 0, 1, 192, 168, 0, 11]) + (56324).to_bytes(2, "big") + b"\x01\xbb"
TCP6_BLOCK = (
    socket.inet_pton(INET6, "2001:db8::1")
    + socket.inet_pton(INET6, "2001:db8::11")
    + (56324).to_bytes(2, "big")
    + (443).to_bytes(2, "big")
)
UNIX_BLOCK = b"/run/client.sock".ljust(108, b"\0") + b"/run/haproxy.sock".ljust(108, b"\0")
SSL_VALUE = ssl_value(
    SslInfo(
        PP2_CLIENT_SSL | PP2_CLIENT_CERT_CONN,
        0,
        version="TLSv1.3",
        cn="client.example",
        cipher="TLS_AES_256_GCM_SHA384",
        sig_alg="RSA-SHA256",
        key_alg="RSA2048",
    )
)

# (name, header bytes, expected fields): the spec's v1 lines (section 2.1, the three
# longest forms at their maximum), and each protocol byte of section 2.2, LOCAL, TLVs.
EXAMPLES: list[tuple[str, bytes, dict[str, Any]]] = [
    (
        "v1 tcp4 (the spec's example)",
        b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n",
        {"family": INET, "source": ("192.168.0.1", 56324), "destination": ("192.168.0.11", 443)},
    ),
    (
        "v1 tcp4 longest (56 bytes)",
        b"PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n",
        {"source": ("255.255.255.255", 65535), "destination": ("255.255.255.255", 65535)},
    ),
    (
        "v1 tcp6 longest (104 bytes)",
        f"PROXY TCP6 {MAX6} {MAX6} 65535 65535\r\n".encode(),
        {"family": INET6, "source": (MAX6, 65535, 0, 0), "destination": (MAX6, 65535, 0, 0)},
    ),
    (
        "v1 tcp6 compressed",
        b"PROXY TCP6 2001:DB8::1 ::1 0 8080\r\n",
        {"source": ("2001:db8::1", 0, 0, 0), "destination": ("::1", 8080, 0, 0)},
    ),
    (
        "v1 unknown, short form (15 bytes)",
        b"PROXY UNKNOWN\r\n",
        {"family": UNSPEC, "protocol": None, "source": None, "relayed": False},
    ),
    (
        "v1 unknown, worst case (107 bytes)",
        f"PROXY UNKNOWN {MAX6} {MAX6} 65535 65535\r\n".encode(),
        {"family": UNSPEC, "source": None},
    ),
    (
        "v2 tcp4 (0x11)",
        v2(0x21, 0x11, TCP4_BLOCK),
        {"family": INET, "protocol": STREAM, "source": ("192.168.0.1", 56324)},
    ),
    (
        "v2 udp4 (0x12)",
        v2(0x21, 0x12, TCP4_BLOCK),
        {"family": INET, "protocol": DGRAM, "destination": ("192.168.0.11", 443)},
    ),
    (
        "v2 tcp6 (0x21)",
        v2(0x21, 0x21, TCP6_BLOCK),
        {"family": INET6, "source": ("2001:db8::1", 56324, 0, 0)},
    ),
    (
        "v2 udp6 (0x22)",
        v2(0x21, 0x22, TCP6_BLOCK),
        {"protocol": DGRAM, "destination": ("2001:db8::11", 443, 0, 0)},
    ),
    (
        "v2 unix stream (0x31)",
        v2(0x21, 0x31, UNIX_BLOCK),
        {"family": UNIX, "source": "/run/client.sock", "destination": "/run/haproxy.sock"},
    ),
    (
        "v2 unix datagram, abstract names (0x32)",
        v2(0x21, 0x32, b"\0client".ljust(108, b"\0") + bytes(108)),
        {"protocol": DGRAM, "source": b"\0client", "destination": ""},
    ),
    (
        "v2 unspec (0x00), no address",
        v2(0x21, 0x00, b""),
        {"family": UNSPEC, "protocol": None, "relayed": False},
    ),
    (
        "v2 LOCAL (a health check)",
        v2(0x20, 0x00, b""),
        {"command": Command.LOCAL, "relayed": False},
    ),
    (
        "v2 LOCAL with an address block, which is discarded",
        v2(0x20, 0x11, TCP4_BLOCK),
        {"command": Command.LOCAL, "family": INET, "source": None},
    ),
    (
        "v2 tcp4 with every registered TLV",
        encode_v2(
            source=("192.168.0.1", 56324),
            destination=("192.168.0.11", 443),
            tlvs=[
                (PP2_TYPE_ALPN, b"h2"),
                (PP2_TYPE_AUTHORITY, "bücher.example".encode()),
                (PP2_TYPE_NOOP, b""),
                (PP2_TYPE_UNIQUE_ID, b"x" * 128),
                (PP2_TYPE_SSL, SSL_VALUE),
                (PP2_TYPE_NETNS, b"blue"),
                (0xE0, b"custom"),
                (PP2_TYPE_CRC32C, bytes(4)),
            ],
        ),
        {
            "alpn": b"h2",
            "authority": "bücher.example",
            "unique_id": b"x" * 128,
            "netns": "blue",
            "ssl": SslInfo(
                PP2_CLIENT_SSL | PP2_CLIENT_CERT_CONN,
                0,
                "TLSv1.3",
                "client.example",
                "TLS_AES_256_GCM_SHA384",
                "RSA-SHA256",
                "RSA2048",
                (
                    (0x21, b"TLSv1.3"),
                    (0x22, b"client.example"),
                    (0x23, b"TLS_AES_256_GCM_SHA384"),
                    (0x24, b"RSA-SHA256"),
                    (0x25, b"RSA2048"),
                ),
            ),
        },
    ),
    (
        "v2 unspec with TLVs after the empty address block",
        encode_v2(family=UNSPEC, protocol=None, tlvs=[(PP2_TYPE_UNIQUE_ID, b"id-1")]),
        {"relayed": False, "unique_id": b"id-1"},
    ),
]


def check(header: ProxyHeader | None, raw: bytes, expected: dict[str, Any]) -> None:
    assert header is not None
    assert header.size == len(raw)
    for name, value in expected.items():
        assert getattr(header, name) == value, name


@pytest.mark.parametrize(("name", "raw", "expected"), EXAMPLES, ids=[e[0] for e in EXAMPLES])
def test_spec_example_split_at_every_byte(name: str, raw: bytes, expected: dict[str, Any]) -> None:
    """Any prefix is 'need more'; the whole header, with or without the stream after it,
    parses the same; the stream's bytes are not counted in its size."""
    for cut in range(len(raw)):
        assert parse_header(raw[:cut]) is None, cut
    check(parse_header(raw), raw, expected)
    check(parse_header(raw + REQUEST), raw, expected)
    check(parse_header(bytearray(raw + REQUEST)), raw, expected)
    check(parse_header(memoryview(raw + REQUEST)[0:]), raw, expected)


@pytest.mark.parametrize(("name", "raw", "expected"), EXAMPLES, ids=[e[0] for e in EXAMPLES])
def test_spec_example_arriving_byte_by_byte_in_a_buffer(
    name: str, raw: bytes, expected: dict[str, Any]
) -> None:
    """The handler's case: bytes accumulate in a Buffer; parsing does not consume."""
    buffer = Buffer()
    for i, byte in enumerate(raw + REQUEST):
        buffer.append(bytes([byte]))
        header = parse_header(buffer)
        if i + 1 < len(raw):
            assert header is None
        else:
            check(header, raw, expected)
    assert buffer.readable_bytes == len(raw + REQUEST)
    buffer.append(b"more")  # the buffer can grow: parse_header released its view


def test_v1_address_field_lengths_meet_the_107_byte_bound() -> None:
    longest = f"PROXY UNKNOWN {MAX6} {MAX6} 65535 65535\r\n".encode()
    assert len(longest) == V1_MAX_SIZE == 107
    assert parse_header(longest + b"x") is not None
    with pytest.raises(ProxyProtocolError, match="no CRLF in the first 107 bytes"):
        parse_header(longest[:-2] + b" \r\n")  # 108 bytes: CRLF one byte too late


def test_tlv_accessor_and_crc32c_of_the_tlv_example() -> None:
    [raw] = [raw for name, raw, _ in EXAMPLES if name == "v2 tcp4 with every registered TLV"]
    header = parse_header(raw)
    assert header is not None
    assert header.tlv(0xE0) == b"custom" and header.tlv(0xE1) is None
    assert header.ssl is not None and header.ssl.tls
    crc = header.tlv(PP2_TYPE_CRC32C)
    assert crc is not None and crc != bytes(4)
    assert encode(header) == raw


def test_crc32c_known_vectors() -> None:
    """RFC 3720 (iSCSI) appendix B.4 vectors, and the common check value."""
    assert crc32c(b"123456789") == 0xE3069283
    assert crc32c(bytes(32)) == 0x8A9136AA
    assert crc32c(b"\xff" * 32) == 0x62A8AB43
    assert crc32c(bytes(range(32))) == 0x46DD794E
    assert crc32c(bytes(range(31, -1, -1))) == 0x113FDB5C


# -- malformed headers: refused, with the part named -----------------------------------

GOOD_V1 = b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n"

MALFORMED: list[tuple[str, bytes, str]] = [
    ("an HTTP request", b"GET / HTTP/1.1\r\n\r\n", "not a PROXY protocol header"),
    ("a TLS ClientHello", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", "not a PROXY"),
    ("lower-case proxy", GOOD_V1.lower(), "not a PROXY protocol header"),
    ("PROXY without its space", b"PROXY\r\n", "not a PROXY protocol header"),
    ("v1 bare LF", GOOD_V1.replace(b"\r\n", b"\n"), "bare LF"),
    ("v1 bare CR", GOOD_V1.replace(b"\r\n", b"\rx\r\n"), "bare CR"),
    ("v1 LF inside", b"PROXY TCP4 1.2.3.4\n5.6.7.8 1 2\r\n", "bare LF"),
    ("v1 no CRLF in 107 bytes", b"PROXY UNKNOWN " + b"x" * 100, "no CRLF in the first 107"),
    ("v1 unknown protocol", b"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n", "protocol b'TCP5'"),
    ("v1 udp", b"PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n", "protocol b'UDP4'"),
    ("v1 UNKNOWN glued", b"PROXY UNKNOWNX\r\n", "protocol b'UNKNOWNX'"),
    ("v1 empty protocol", b"PROXY \r\n", "protocol b''"),
    ("v1 missing port", b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", "5 fields"),
    ("v1 double space", b"PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n", "7 fields"),
    ("v1 trailing space", b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n", "7 fields"),
    ("v1 tab separator", b"PROXY TCP4 1.2.3.4\t5.6.7.8 1 2 3\r\n", "source address"),
    ("v1 ipv4 leading zero", b"PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n", "source address '01.2.3.4'"),
    ("v1 ipv4 octet 256", b"PROXY TCP4 1.2.3.4 5.6.7.256 1 2\r\n", "destination address"),
    ("v1 ipv4 three parts", b"PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n", "source address '1.2.3'"),
    ("v1 ipv6 in tcp4", b"PROXY TCP4 ::1 5.6.7.8 1 2\r\n", "is not an IPv4 address"),
    ("v1 ipv4 in tcp6", b"PROXY TCP6 1.2.3.4 ::1 1 2\r\n", "is not an IPv6 address"),
    ("v1 ipv6 scope id", b"PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n", "is not an IPv6 address"),
    ("v1 ipv6 two ::", b"PROXY TCP6 1::2::3 ::1 1 2\r\n", "is not an IPv6 address"),
    ("v1 host name", b"PROXY TCP4 localhost 5.6.7.8 1 2\r\n", "is not an IPv4 address"),
    ("v1 non-ascii", "PROXY TCP4 1.2.3.4 5.6.7.８ 1 2\r\n".encode(), "destination address"),
    ("v1 port 65536", b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n", "source port '65536'"),
    ("v1 port leading zero", b"PROXY TCP4 1.2.3.4 5.6.7.8 1 080\r\n", "destination port '080'"),
    ("v1 port sign", b"PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n", "source port '+1'"),
    ("v1 port hex", b"PROXY TCP4 1.2.3.4 5.6.7.8 0x1 2\r\n", "source port '0x1'"),
    ("v1 empty port", b"PROXY TCP4 1.2.3.4 5.6.7.8 1 \r\n", "destination port ''"),
    ("v2 wrong signature", v2(0x21, 0x11, TCP4_BLOCK, sig=b"\r\n\r\n\x00\r\nQUIX\n"), "not a"),
    ("v2 version 1", v2(0x11, 0x11, TCP4_BLOCK), "version 1"),
    ("v2 version 3", v2(0x31, 0x11, TCP4_BLOCK), "version 3"),
    ("v2 command 2", v2(0x22, 0x11, TCP4_BLOCK), "unknown command 0x2"),
    ("v2 command 0xf", v2(0x2F, 0x11, TCP4_BLOCK), "unknown command 0xf"),
    ("v2 family 4", v2(0x21, 0x41, TCP4_BLOCK), "unknown address family 0x4"),
    ("v2 family 0xf", v2(0x21, 0xF1, TCP4_BLOCK), "unknown address family 0xf"),
    ("v2 protocol 3", v2(0x21, 0x13, TCP4_BLOCK), "unknown transport protocol 0x3"),
    (
        "v2 inet block short",
        v2(0x21, 0x11, TCP4_BLOCK[:8]),
        "8-byte address block; AF_INET needs 12",
    ),
    ("v2 inet6 block short", v2(0x21, 0x21, TCP4_BLOCK), "AF_INET6 needs 36"),
    ("v2 unix block short", v2(0x21, 0x31, bytes(200)), "AF_UNIX needs 216"),
    (
        "v2 above the limit",
        v2(0x21, 0x11, b"", length=MAX_HEADER_SIZE),
        "above the 4096-byte limit",
    ),
    (
        "v2 one stray byte",
        v2(0x21, 0x11, TCP4_BLOCK + b"\x04"),
        "1 stray byte(s) after the last TLV",
    ),
    ("v2 two stray bytes", v2(0x21, 0x11, TCP4_BLOCK + b"\x04\x00"), "2 stray byte(s)"),
    (
        "v2 TLV past the end",
        v2(0x21, 0x11, TCP4_BLOCK + b"\x01\x00\x05ab"),
        "TLV 0x01 of 5 bytes runs past the end of its block by 3",
    ),
    (
        "v2 duplicate ALPN",
        v2(0x21, 0x11, TCP4_BLOCK + tlv(PP2_TYPE_ALPN, b"h2") + tlv(PP2_TYPE_ALPN, b"h3")),
        "TLV 0x01 appears twice",
    ),
    (
        "v2 bad CRC32C",
        v2(0x21, 0x11, TCP4_BLOCK + tlv(PP2_TYPE_CRC32C, b"\x00\x00\x00\x01")),
        "CRC32C mismatch",
    ),
    (
        "v2 short CRC32C",
        v2(0x21, 0x11, TCP4_BLOCK + tlv(PP2_TYPE_CRC32C, b"\x00\x00\x01")),
        "a 3-byte CRC32C TLV",
    ),
    (
        "v2 unique id of 129 bytes",
        v2(0x21, 0x11, TCP4_BLOCK + tlv(PP2_TYPE_UNIQUE_ID, b"u" * 129)),
        "a 129-byte UNIQUE_ID, above 128",
    ),
    (
        "v2 authority not utf-8",
        v2(0x21, 0x11, TCP4_BLOCK + tlv(PP2_TYPE_AUTHORITY, b"\xff\xfe")),
        "AUTHORITY TLV is not utf-8",
    ),
    (
        "v2 netns not ascii",
        v2(0x21, 0x11, TCP4_BLOCK + tlv(PP2_TYPE_NETNS, "é".encode())),
        "NETNS TLV is not ascii",
    ),
    (
        "v2 ssl shorter than 5",
        v2(0x21, 0x11, TCP4_BLOCK + tlv(PP2_TYPE_SSL, b"\x01\x00\x00\x00")),
        "a 4-byte SSL TLV",
    ),
    (
        "v2 ssl sub-TLV past the end",
        v2(0x21, 0x11, TCP4_BLOCK + tlv(PP2_TYPE_SSL, b"\x01" + bytes(4) + b"\x21\x00\x09TLS")),
        "SSL sub-TLV 0x21 of 9 bytes runs past",
    ),
    (
        "v2 ssl version not ascii",
        v2(0x21, 0x11, TCP4_BLOCK + tlv(PP2_TYPE_SSL, b"\x01" + bytes(4) + tlv(0x21, b"\xc3\xa9"))),
        "SSL version TLV is not ascii",
    ),
    (
        "v2 ssl version twice",
        v2(
            0x21,
            0x11,
            TCP4_BLOCK + tlv(PP2_TYPE_SSL, b"\x01" + bytes(4) + tlv(0x21, b"a") + tlv(0x21, b"b")),
        ),
        "SSL sub-TLV 0x21 appears twice",
    ),
]


@pytest.mark.parametrize(("name", "raw", "message"), MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_header_is_refused_naming_the_part(name: str, raw: bytes, message: str) -> None:
    with pytest.raises(ProxyProtocolError) as info:
        parse_header(raw + REQUEST)
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("prefix", "message"),
    [
        (b"G", "not a PROXY protocol header"),  # the first byte suffices
        (b"\r\n\r\n\x01", "not a PROXY protocol header"),  # the signature breaks at byte 5
        (b"PROXY\t", "not a PROXY protocol header"),
        (b"PROXY TCP4 1.2.3.4\n", "bare LF"),  # before any CRLF could come
        (b"PROXY TCP4 1.2\r1", "bare CR"),
        (V2_SIGNATURE + b"\x21\x11\xff\xff", "a 65551-byte header, above the 4096-byte limit"),
    ],
)
def test_malformed_prefix_is_refused_before_the_rest_arrives(prefix: bytes, message: str) -> None:
    with pytest.raises(ProxyProtocolError, match=message):
        parse_header(prefix)


def test_the_largest_v2_header_is_read_up_to_the_limit_given() -> None:
    """No byte is reserved from the announced length: 65535 announced, 16 received,
    'need more' when the caller's limit allows it, an error when not."""
    head = V2_SIGNATURE + b"\x21\x00\xff\xff"
    assert parse_header(head, max_size=V2_MAX_SIZE) is None
    body = tlv(PP2_TYPE_NOOP, bytes(0xFFFF - 3))
    header = parse_header(head + body + b"tail", max_size=V2_MAX_SIZE)
    assert header is not None and header.size == V2_MAX_SIZE
    with pytest.raises(ProxyProtocolError, match="above the 65550-byte limit"):
        parse_header(head, max_size=V2_MAX_SIZE - 1)


# -- round trips through the test encoder (hypothesis) ---------------------------------

ipv4 = st.ip_addresses(v=4).map(str)
ipv6 = st.ip_addresses(v=6).map(lambda a: socket.inet_ntop(INET6, a.packed))
port = st.integers(0, 65535)
v1_headers = st.one_of(
    st.tuples(st.just(INET), st.tuples(ipv4, port), st.tuples(ipv4, port)),
    st.tuples(
        st.just(INET6),
        st.builds(lambda h, p: (h, p, 0, 0), ipv6, port),
        st.builds(lambda h, p: (h, p, 0, 0), ipv6, port),
    ),
    st.tuples(st.just(UNSPEC), st.none(), st.none()),
)
path_name = st.binary(min_size=1, max_size=107).filter(lambda b: b"\0" not in b and b[0] != 0)
abstract_name = st.binary(min_size=1, max_size=107).filter(lambda b: not b.endswith(b"\0"))
unix_name = st.one_of(
    path_name.map(lambda b: b.decode("utf-8", "surrogateescape")),
    abstract_name.map(lambda b: b"\0" + b),
    st.just(""),
)
v2_addresses = st.one_of(
    st.tuples(st.just(INET), st.tuples(ipv4, port), st.tuples(ipv4, port)),
    st.tuples(
        st.just(INET6),
        st.builds(lambda h, p: (h, p, 0, 0), ipv6, port),
        st.builds(lambda h, p: (h, p, 0, 0), ipv6, port),
    ),
    st.tuples(st.just(UNIX), unix_name, unix_name),
    st.tuples(st.just(UNSPEC), st.none(), st.none()),
)
ascii_text = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=40)
ssl_infos = st.builds(
    SslInfo,
    client=st.integers(0, 7),
    verify=st.integers(0, 2**32 - 1),
    version=st.none() | ascii_text,
    cn=st.none() | st.text(max_size=30),
    cipher=st.none() | ascii_text,
    sig_alg=st.none() | ascii_text,
    key_alg=st.none() | ascii_text,
    tlvs=st.lists(st.tuples(st.integers(0x26, 0xFF), st.binary(max_size=20)), max_size=3).map(
        tuple
    ),
)
# Single TLVs: at most one of each registered type; repeatable ones: NOOP and custom.
single_tlvs = st.fixed_dictionaries(
    {},
    optional={
        "alpn": st.binary(min_size=1, max_size=20),
        "authority": st.text(min_size=1, max_size=40),
        "unique_id": st.binary(max_size=128),
        "ssl": ssl_infos,
        "netns": ascii_text,
        "crc": st.just(True),
    },
)
repeatable_tlvs = st.lists(
    st.tuples(st.sampled_from([PP2_TYPE_NOOP, *range(0xE0, 0xF8)]), st.binary(max_size=30)),
    max_size=4,
)


def tlv_list(
    single: dict[str, Any], repeatable: list[tuple[int, bytes]]
) -> list[tuple[int, bytes]]:
    values = {
        "alpn": (PP2_TYPE_ALPN, single.get("alpn")),
        "authority": (PP2_TYPE_AUTHORITY, single.get("authority", "").encode()),
        "unique_id": (PP2_TYPE_UNIQUE_ID, single.get("unique_id")),
        "ssl": (PP2_TYPE_SSL, ssl_value(single["ssl"]) if "ssl" in single else None),
        "netns": (PP2_TYPE_NETNS, single.get("netns", "").encode()),
        "crc": (PP2_TYPE_CRC32C, bytes(4)),
    }
    tlvs = [values[name] for name in single]
    return [(kind, value) for kind, value in tlvs if value is not None] + repeatable


@given(v1_headers, st.binary(max_size=64))
def test_v1_round_trip(parts: tuple[Any, Any, Any], stream: bytes) -> None:
    family, source, destination = parts
    raw = encode_v1(family, source, destination)
    header = parse_header(raw + stream)
    assert header is not None
    assert (header.version, header.size) == (1, len(raw))
    assert (header.source, header.destination) == (source, destination)
    assert header.family == family and header.relayed == (family != UNSPEC)
    assert encode(header) == raw
    for cut in range(len(raw)):
        assert parse_header(raw[:cut]) is None


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from([Command.PROXY, Command.LOCAL]),
    v2_addresses,
    st.sampled_from([STREAM, DGRAM]),
    single_tlvs,
    repeatable_tlvs,
    st.randoms(),
)
def test_v2_round_trip(
    command: Command,
    addresses: tuple[Any, Any, Any],
    protocol: socket.SocketKind,
    single: dict[str, Any],
    repeatable: list[tuple[int, bytes]],
    rnd: Any,
) -> None:
    family, source, destination = addresses
    tlvs = tlv_list(single, repeatable)
    rnd.shuffle(tlvs)
    raw = encode_v2(
        command=command,
        family=family,
        protocol=protocol,
        source=source,
        destination=destination,
        tlvs=tlvs,
    )
    header = parse_header(raw + b"stream", max_size=V2_MAX_SIZE)
    assert header is not None
    assert (header.version, header.command, header.size) == (2, command, len(raw))
    assert header.family == family and header.protocol == protocol
    if command is Command.LOCAL:
        assert header.source is None and header.tlvs == ()
        return
    assert (header.source, header.destination) == (
        (source, destination) if family != UNSPEC else (None, None)
    )
    assert [t for t in header.tlvs if t[0] != PP2_TYPE_CRC32C] == [
        t for t in tlvs if t[0] != PP2_TYPE_CRC32C
    ]
    assert header.alpn == single.get("alpn")
    assert header.authority == single.get("authority")
    assert header.unique_id == single.get("unique_id")
    assert header.netns == single.get("netns")
    if "ssl" in single:
        sent = single["ssl"]
        assert header.ssl is not None
        assert (header.ssl.client, header.ssl.verify) == (sent.client, sent.verify)
        assert (header.ssl.version, header.ssl.cn, header.ssl.cipher) == (
            sent.version,
            sent.cn,
            sent.cipher,
        )
        assert (header.ssl.sig_alg, header.ssl.key_alg) == (sent.sig_alg, sent.key_alg)
        assert header.ssl.tlvs[len(header.ssl.tlvs) - len(sent.tlvs) :] == sent.tlvs
    else:
        assert header.ssl is None
    assert encode(header) == raw
    for cut in range(len(raw)):
        assert parse_header(raw[:cut], max_size=V2_MAX_SIZE) is None


@settings(max_examples=300)
@given(st.binary(max_size=300))
def test_any_bytes_give_need_more_a_header_or_a_protocol_error(data: bytes) -> None:
    try:
        header = parse_header(data)
    except ProxyProtocolError:
        return
    assert header is None or 0 < header.size <= len(data)


@settings(max_examples=300)
@given(st.sampled_from([raw for _, raw, _ in EXAMPLES]), st.data())
def test_a_corrupted_example_gives_need_more_a_header_or_a_protocol_error(
    raw: bytes, data: st.DataObject
) -> None:
    """Single-byte corruptions of valid headers reach every check of the parser."""
    at = data.draw(st.integers(0, len(raw) - 1))
    value = data.draw(st.integers(0, 255))
    corrupted = raw[:at] + bytes([value]) + raw[at + 1 :]
    try:
        header = parse_header(corrupted)
    except ProxyProtocolError:
        return
    assert header is None or 0 < header.size <= len(corrupted)


# -- the trust list ----------------------------------------------------------------------


def test_trust_list_matches_addresses_networks_and_mapped_ipv4() -> None:
    trust = ProxyTrust(["127.0.0.1/32", "10.0.0.0/8", "::1", "fd00::/8"])
    assert trust.trusts(("127.0.0.1", 40000))
    assert trust.trusts(("10.255.0.7", 1)) and ("10.0.0.1", 2) in trust
    assert trust.trusts(("::1", 5, 0, 0)) and trust.trusts(("fd12::3", 5, 0, 0))
    assert trust.trusts(("::ffff:10.1.2.3", 5, 0, 0))  # dual-stack listener, IPv4 client
    assert trust.trusts("10.1.1.1")  # a bare host
    assert not trust.trusts(("127.0.0.2", 1))
    assert not trust.trusts(("11.0.0.1", 1)) and not trust.trusts(("::2", 1, 0, 0))
    assert not trust.trusts(("fe80::1%eth0", 1, 0, 0))
    assert not trust.trusts("/run/haproxy.sock") and not trust.trusts("")


def test_trust_list_any_unix_and_comma_string() -> None:
    assert ProxyTrust(["*"]).trusts(("203.0.113.9", 1)) and ProxyTrust("*").trusts("")
    unix = ProxyTrust("unix, 192.0.2.0/24")
    assert unix.trusts("") and unix.trusts("/run/x.sock") and unix.trusts(b"\0abstract")
    assert unix.trusts(("192.0.2.200", 1)) and not unix.trusts(("192.0.3.1", 1))
    assert not ProxyTrust([]).trusts(("127.0.0.1", 1))
    assert repr(unix) == "ProxyTrust(['192.0.2.0/24', 'unix'])"


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("10.0.0.1/8", "has host bits set; 10.0.0.0/8?"),
        ("localhost", "'localhost' is not an IP address, a network"),
        ("10.0.0.0/33", "'10.0.0.0/33' is not an IP address"),
        ("", "'' is not an IP address"),
    ],
)
def test_trust_list_entry_errors(entry: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ProxyTrust([entry])
