"""Named socket options: parsing, validation, set-and-read-back on real sockets, SO_LINGER RST."""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator

import pytest
from net_support import fd_count, needs_ipv6

from ioreactor.net.acceptor import open_listener
from ioreactor.net.sockopt import (
    SOCKOPTS,
    KeepAlive,
    SockOptError,
    apply_sockopts,
    parse_sockopt,
    parse_sockopts,
    socket_kind,
)


@pytest.fixture
def tcp_pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    """A connected TCP pair on loopback: (client, accepted server side)."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname(), timeout=10)
        server, _ = listener.accept()
    with client, server:
        yield client, server


# -- parsing --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("SO_REUSEADDR=1", True),
        ("so_reuseport=off", False),
        ("TCP_NODELAY=yes", True),
        ("SO_KEEPALIVE=on", True),
        ("SO_KEEPALIVE=0", False),
        ("SO_KEEPALIVE=60,10,5", KeepAlive(60, 10, 5)),
        ("SO_KEEPALIVE=60:10:5", KeepAlive(60, 10, 5)),
        ("TCP_KEEPIDLE=30", 30),
        ("TCP_KEEPINTVL=5", 5),
        ("TCP_KEEPCNT=3", 3),
        ("SO_LINGER=0", 0),
        ("SO_LINGER=5", 5),
        ("SO_LINGER=off", None),
        ("SO_SNDBUF=65536", 65536),
        ("SO_RCVBUF=256K", 256 * 1024),
        ("SO_RCVBUF=1M", 1024 * 1024),
        ("IPV6_V6ONLY=0", False),
    ],
)
def test_parse_values(text: str, value: object) -> None:
    opt = parse_sockopt(text)
    assert opt.value == value
    assert parse_sockopt(str(opt)).value == value  # str() prints NAME=VALUE back


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("TCP_NODELAY", "expected NAME=VALUE"),
        ("=1", "expected NAME=VALUE"),
        ("SO_FOO=1", "unknown socket option 'SO_FOO' (known: SO_REUSEADDR"),
        ("TCP_NODELAY=", "TCP_NODELAY needs a value"),
        ("TCP_NODELAY=maybe", "bad value for TCP_NODELAY: expected 1/0, on/off"),
        ("SO_LINGER=-1", "bad value for SO_LINGER: expected off, or seconds 0-65535 (0 = abortive"),
        ("SO_LINGER=70000", "bad value for SO_LINGER"),
        ("SO_SNDBUF=0", "0 bytes is out of range 1-"),
        ("SO_SNDBUF=12Q", "expected a size in bytes"),
        ("SO_SNDBUF=2048M", "out of range"),
        ("SO_KEEPALIVE=60,10", "three numbers"),
        ("SO_KEEPALIVE=0,10,5", "0 is out of range 1-32767"),
        ("SO_KEEPALIVE=60,10,500", "500 is out of range 1-127"),
        ("SO_KEEPALIVE=sometimes", "expected on/off or IDLE,INTERVAL,COUNT"),
        ("TCP_KEEPCNT=128", "128 is out of range 1-127"),
        ("TCP_KEEPIDLE=x", "expected an integer 1-32767"),
    ],
)
def test_parse_errors_name_option_and_problem(text: str, message: str) -> None:
    with pytest.raises(SockOptError) as info:
        parse_sockopt(text)
    assert message in str(info.value)
    assert str(info.value).startswith(repr(text))


def test_same_option_twice_is_an_error() -> None:
    with pytest.raises(SockOptError, match="SO_SNDBUF is given more than once"):
        parse_sockopts(["SO_SNDBUF=4096", "so_sndbuf=8192"])


def test_keepalive_timers_are_validated() -> None:
    with pytest.raises(ValueError, match="keepalive count must be an integer 1-127"):
        KeepAlive(60, 10, 0)
    with pytest.raises(ValueError, match="keepalive idle"):
        KeepAlive(0)


# -- applicability --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "family", "socktype", "message"),
    [
        ("TCP_NODELAY=1", socket.AF_INET, socket.SOCK_DGRAM, "does not apply to udp sockets"),
        ("SO_LINGER=0", socket.AF_UNIX, socket.SOCK_STREAM, "does not apply to unix sockets"),
        ("SO_REUSEPORT=1", socket.AF_UNIX, socket.SOCK_DGRAM, "not apply to unix-dgram"),
        ("SO_KEEPALIVE=1", socket.AF_INET, socket.SOCK_DGRAM, "(it applies to tcp)"),
        ("IPV6_V6ONLY=1", socket.AF_INET, socket.SOCK_STREAM, "IPv6 sockets only"),
    ],
)
def test_option_on_the_wrong_kind_is_an_error(
    text: str, family: int, socktype: int, message: str
) -> None:
    before = fd_count()
    with socket.socket(family, socktype) as sock, pytest.raises(SockOptError, match=message):
        parse_sockopt(text).apply(sock)
    assert fd_count() == before


def test_socket_kind() -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        assert socket_kind(s) == "unix-dgram"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        assert socket_kind(s) == "udp"


# -- set and read back ------------------------------------------------------------------

_TCP_CASES = [
    ("SO_REUSEADDR=1", True),
    ("SO_REUSEADDR=0", False),
    ("SO_REUSEPORT=1", True),
    ("TCP_NODELAY=1", True),
    ("TCP_NODELAY=0", False),
    ("SO_KEEPALIVE=61,11,6", KeepAlive(61, 11, 6)),
    ("SO_KEEPALIVE=0", None),
    ("TCP_KEEPIDLE=33", 33),
    ("TCP_KEEPINTVL=7", 7),
    ("TCP_KEEPCNT=4", 4),
    ("SO_LINGER=0", 0),
    ("SO_LINGER=3", 3),
    ("SO_LINGER=off", None),
]


@pytest.mark.parametrize(("text", "expected"), _TCP_CASES)
def test_tcp_options_read_back(
    tcp_pair: tuple[socket.socket, socket.socket], text: str, expected: object
) -> None:
    client, _ = tcp_pair
    opt = parse_sockopt(text)
    opt.apply(client)
    assert opt.read(client) == expected


def test_keepalive_on_keeps_the_timers_in_effect(
    tcp_pair: tuple[socket.socket, socket.socket],
) -> None:
    client, _ = tcp_pair
    client.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 99)
    opt = parse_sockopt("SO_KEEPALIVE=on")
    opt.apply(client)
    value = opt.read(client)
    assert isinstance(value, KeepAlive) and value.idle == 99


@pytest.mark.skipif("TCP_QUICKACK" not in SOCKOPTS, reason="no TCP_QUICKACK on this OS")
def test_quickack_reads_back(tcp_pair: tuple[socket.socket, socket.socket]) -> None:
    client, _ = tcp_pair
    for text, expected in (("TCP_QUICKACK=0", False), ("TCP_QUICKACK=1", True)):
        opt = parse_sockopt(text)
        opt.apply(client)
        assert opt.read(client) is expected
    assert not SOCKOPTS["TCP_QUICKACK"].inherited


@pytest.mark.parametrize(
    ("family", "socktype"),
    [
        (socket.AF_INET, socket.SOCK_STREAM),
        (socket.AF_INET, socket.SOCK_DGRAM),
        (socket.AF_UNIX, socket.SOCK_STREAM),
        (socket.AF_UNIX, socket.SOCK_DGRAM),
    ],
)
@pytest.mark.parametrize("name", ["SO_SNDBUF", "SO_RCVBUF"])
def test_buffer_sizes_read_back_doubled(family: int, socktype: int, name: str) -> None:
    """Linux doubles the requested size to make room for its bookkeeping (socket(7))."""
    opt = parse_sockopt(f"{name}=48K")
    with socket.socket(family, socktype) as sock:
        opt.apply(sock)
        assert opt.read(sock) == 2 * 48 * 1024


@needs_ipv6
@pytest.mark.parametrize("socktype", [socket.SOCK_STREAM, socket.SOCK_DGRAM])
def test_v6only_reads_back(socktype: int) -> None:
    with socket.socket(socket.AF_INET6, socktype) as sock:
        for text, expected in (("IPV6_V6ONLY=1", True), ("IPV6_V6ONLY=0", False)):
            opt = parse_sockopt(text)
            opt.apply(sock)
            assert opt.read(sock) is expected


def test_every_option_in_the_table_is_tested() -> None:
    tested = {text.split("=")[0] for text, _ in _TCP_CASES} | {
        "SO_SNDBUF",
        "SO_RCVBUF",
        "IPV6_V6ONLY",
        "TCP_QUICKACK",
    }
    assert set(SOCKOPTS) <= tested


def test_listener_options_reach_accepted_sockets() -> None:
    """Set once on the listener (open_listener), Linux copies them to each connection."""
    opts = parse_sockopts(["TCP_NODELAY=1", "SO_KEEPALIVE=45,9,3", "SO_LINGER=2", "SO_RCVBUF=64K"])
    listener = open_listener(socket.AF_INET, ("127.0.0.1", 0), sockopts=opts)
    with listener, socket.create_connection(listener.getsockname(), timeout=10):
        listener.setblocking(True)
        accepted, _ = listener.accept()
        with accepted:
            assert [opt.read(accepted) for opt in opts] == [
                True,
                KeepAlive(45, 9, 3),
                2,
                128 * 1024,
            ]


def test_open_listener_closes_its_socket_when_an_option_fails() -> None:
    before = fd_count()
    with pytest.raises(SockOptError, match="TCP_NODELAY does not apply to unix sockets"):
        open_listener(socket.AF_UNIX, "\0unused", sockopts=[parse_sockopt("TCP_NODELAY=1")])
    assert fd_count() == before


def test_apply_reports_which_option_the_kernel_refused() -> None:
    opt = parse_sockopt("TCP_KEEPIDLE=5")
    with socket.socket() as sock:
        sock.close()
        with pytest.raises(OSError, match="setting TCP_KEEPIDLE=5: Bad file descriptor"):
            opt.apply(sock)


# -- SO_LINGER=0: the abortive close ------------------------------------------------------


def test_linger_zero_close_sends_rst(tcp_pair: tuple[socket.socket, socket.socket]) -> None:
    """l_onoff=1, l_linger=0: close() discards unsent data and sends RST, not FIN."""
    client, server = tcp_pair
    apply_sockopts(server, [parse_sockopt("SO_LINGER=0")])
    assert struct.unpack("ii", server.getsockopt(socket.SOL_SOCKET, socket.SO_LINGER, 8)) == (1, 0)
    server.close()
    with pytest.raises(ConnectionResetError):
        client.recv(1)


def test_default_close_sends_fin(tcp_pair: tuple[socket.socket, socket.socket]) -> None:
    """The contrast: without SO_LINGER=0 the peer reads a clean EOF."""
    client, server = tcp_pair
    server.close()
    assert client.recv(1) == b""
