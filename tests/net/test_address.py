"""The address syntax: every kind parses, every malformed part is named, bound names print back."""

from __future__ import annotations

import socket
import uuid

import pytest
from net_support import needs_ipv6

from ioreactor.net.address import (
    SUN_PATH_MAX,
    Address,
    AddressError,
    format_sockname,
    parse_address,
    to_address,
)


@pytest.mark.parametrize(
    ("text", "kind", "family", "sockaddr"),
    [
        ("127.0.0.1:7000", "tcp", socket.AF_INET, ("127.0.0.1", 7000)),
        ("tcp://127.0.0.1:0", "tcp", socket.AF_INET, ("127.0.0.1", 0)),
        ("[::1]:7000", "tcp", socket.AF_INET6, ("::1", 7000)),
        ("tcp://[::]:65535", "tcp", socket.AF_INET6, ("::", 65535)),
        ("udp://0.0.0.0:53", "udp", socket.AF_INET, ("0.0.0.0", 53)),
        ("udp://[::1]:9", "udp", socket.AF_INET6, ("::1", 9)),
        ("localhost:80", "tcp", socket.AF_INET, ("localhost", 80)),
        ("tcp://my-host.example.org:80", "tcp", socket.AF_INET, ("my-host.example.org", 80)),
        ("[fe80::1%lo]:80", "tcp", socket.AF_INET6, ("fe80::1%lo", 80)),
        ("unix:///run/echo.sock", "unix", socket.AF_UNIX, "/run/echo.sock"),
        ("unix-dgram:///tmp/d.sock", "unix-dgram", socket.AF_UNIX, "/tmp/d.sock"),
        ("unix://@echo", "unix", socket.AF_UNIX, "\0echo"),
        ("unix-dgram://@echo", "unix-dgram", socket.AF_UNIX, "\0echo"),
    ],
)
def test_every_kind_parses(
    text: str, kind: str, family: socket.AddressFamily, sockaddr: object
) -> None:
    address = parse_address(text)
    assert (address.kind, address.family, address.sockaddr) == (kind, family, sockaddr)
    assert parse_address(str(address)) == address  # prints back in the same syntax


def test_socket_types_and_flags() -> None:
    assert parse_address("udp://127.0.0.1:1").socktype == socket.SOCK_DGRAM
    assert parse_address("unix-dgram:///a").socktype == socket.SOCK_DGRAM
    assert parse_address("unix:///a").is_stream
    assert parse_address("unix://@a").is_abstract
    assert not parse_address("unix:///a").is_abstract
    assert parse_address("127.0.0.1:1").is_stream and not parse_address("127.0.0.1:1").is_unix


def test_default_kind_applies_without_scheme() -> None:
    assert parse_address("127.0.0.1:9", default_kind="udp").kind == "udp"
    assert parse_address("tcp://127.0.0.1:9", default_kind="udp").kind == "tcp"


def test_longest_path_that_fits_sun_path() -> None:
    path = "/" + "a" * (SUN_PATH_MAX - 2)  # 107 bytes + NUL = 108
    assert parse_address("unix://" + path).path == path
    name = "@" + "b" * (SUN_PATH_MAX - 1)  # leading NUL + 107
    assert parse_address("unix://" + name).sockaddr == "\0" + "b" * (SUN_PATH_MAX - 1)


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("ftp://127.0.0.1:21", "unknown scheme 'ftp://'"),
        ("tcp://127.0.0.1:70000", "port 70000 is out of range 0-65535"),
        ("127.0.0.1:-1", "port '-1' is not a number"),
        ("127.0.0.1:http", "port 'http' is not a number"),
        ("127.0.0.1:", "missing port"),
        ("127.0.0.1", "missing ':PORT'"),
        (":7000", "missing host"),
        ("[::1:7000", "missing its closing ']'"),
        ("[::1]7000", "expected ':PORT' after ']'"),
        ("::1:7000", "must be written in brackets"),
        ("bad_host!:80", "host 'bad_host!' is not an IP address or a host name"),
        ("-leading.example:80", "is not an IP address or a host name"),
        ("[fe80::1%]:80", "empty zone"),
        ("127.0.0.1%eth0:80", "invalid zone"),
        ("unix://relative/path", "path 'relative/path' is relative"),
        ("unix://", "missing path"),
        ("unix:///tmp/dir/", "names a directory"),
        ("unix://@", "abstract name after '@' is empty"),
        ("unix:///" + "x" * SUN_PATH_MAX, "sun_path holds 108 bytes including the terminating"),
        ("unix://@" + "y" * SUN_PATH_MAX, "abstract name is 108 bytes"),
        ("/tmp/echo.sock", "needs its scheme: unix:///tmp/echo.sock"),
    ],
)
def test_parse_errors_name_the_bad_part(text: str, names: str) -> None:
    with pytest.raises(AddressError) as info:
        parse_address(text)
    assert names in str(info.value)
    assert str(info.value).startswith(repr(text))  # and which address it was


def test_path_limit_counts_bytes_not_characters() -> None:
    path = "/" + "é" * 54  # 1 + 108 bytes in UTF-8: 55 characters only
    with pytest.raises(AddressError, match="path is 109 bytes"):
        parse_address("unix://" + path)


def test_to_address_takes_the_kinds_its_api_serves() -> None:
    assert to_address("unix:///x").kind == "unix"
    assert to_address(("::1", 80)).family == socket.AF_INET6
    assert to_address(("127.0.0.1", 9), default_kind="udp", kinds=("udp",)).kind == "udp"
    with pytest.raises(AddressError, match="a udp address, but this API takes tcp:// or unix://"):
        to_address("udp://127.0.0.1:9")
    with pytest.raises(AddressError, match="out of range"):
        to_address(("127.0.0.1", 65536))
    address = parse_address("udp://127.0.0.1:9")
    assert to_address(address, kinds=("udp",)) is address


def test_unix_constructor_validates() -> None:
    assert Address.unix("/tmp/a", "unix-dgram").sockaddr == "/tmp/a"
    with pytest.raises(AddressError, match="relative"):
        Address.unix("a.sock")
    with pytest.raises(AddressError, match="not a Unix kind"):
        Address.unix("/a", "tcp")


@pytest.mark.parametrize(
    ("text", "socktype"),
    [("tcp://127.0.0.1:0", socket.SOCK_STREAM), ("udp://127.0.0.1:0", socket.SOCK_DGRAM)],
)
def test_ipv4_binds_and_formats_back(text: str, socktype: int) -> None:
    address = parse_address(text)
    with socket.socket(address.family, socktype) as sock:
        sock.bind(address.sockaddr)
        bound = parse_address(format_sockname(address.kind, sock.getsockname()))
    assert bound.host == "127.0.0.1" and bound.port > 0 and bound.kind == address.kind


@needs_ipv6
@pytest.mark.parametrize(
    ("text", "socktype"),
    [("tcp://[::1]:0", socket.SOCK_STREAM), ("udp://[::1]:0", socket.SOCK_DGRAM)],
)
def test_ipv6_binds_and_formats_back(text: str, socktype: int) -> None:
    address = parse_address(text)
    with socket.socket(address.family, socktype) as sock:
        sock.bind(address.sockaddr)
        bound = parse_address(format_sockname(address.kind, sock.getsockname()))
    assert bound.host == "::1" and bound.port > 0 and bound.family == socket.AF_INET6


def test_unix_names_format_back(tmp_path: object) -> None:
    path = f"{tmp_path}/s.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(path)
        assert format_sockname("unix-dgram", sock.getsockname()) == f"unix-dgram://{path}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        name = f"@ioreactor-test-{uuid.uuid4().hex}"
        sock.bind(parse_address("unix://" + name).sockaddr)
        assert format_sockname("unix", sock.getsockname()) == "unix://" + name
