"""ProxyProtocolHandler on a real TcpServer on loopback: the test plays the proxy (its
client socket is the trusted peer) and the inner handler echoes each line with the peer
address it sees -- the client named in the header, not the proxy.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

from ioreactor.net.buffer import Buffer
from ioreactor.net.connection import TcpConnection
from ioreactor.net.handlers import Handler
from ioreactor.net.proxy_protocol import (
    PP2_TYPE_UNIQUE_ID,
    Command,
    ProxyHeader,
    ProxyProtocolHandler,
    ProxyTrust,
)
from ioreactor.net.server import TcpServer
from ioreactor.testing import LoopThread
from support.proxy_protocol import encode_v1, encode_v2

TIMEOUT = 20.0
CLIENT = ("203.0.113.7", 4242)
SERVICE = ("198.51.100.1", 443)
V1 = encode_v1(socket.AF_INET, CLIENT, SERVICE)
V2 = encode_v2(source=CLIENT, destination=SERVICE, tlvs=[(PP2_TYPE_UNIQUE_ID, b"req-1")])
LOOPBACK_ONLY = ProxyTrust(["127.0.0.1"])


class PeerEcho(Handler):
    """Answers each line with the peer it sees: ``b"<host> <port> <line>"``."""

    def __init__(self) -> None:
        self.front: ProxyProtocolHandler | None = None
        #: (peer, proxy peer, header, context) as on_connection saw them.
        self.connected: list[tuple[Any, Any, ProxyHeader | None, Any]] = []
        self.closed: list[Any] = []
        self.eofs = 0
        self.drains = 0
        self.shutdowns = 0

    def on_connection(self, conn: TcpConnection) -> None:
        assert self.front is not None
        self.connected.append(
            (conn.peer, self.front.proxy_peer(conn), self.front.header(conn), conn.context)
        )

    def on_message(self, conn: TcpConnection, buffer: Buffer) -> None:
        while (end := buffer.find_eol()) >= 0:
            conn.send(self.reply(conn, buffer.read(end + 1)))

    @staticmethod
    def reply(conn: TcpConnection, line: bytes) -> bytes:
        return f"{conn.peer[0]} {conn.peer[1]} ".encode() + line

    def on_write_complete(self, conn: TcpConnection) -> None:
        self.drains += 1

    def on_eof(self, conn: TcpConnection) -> bool:
        self.eofs += 1
        return False

    def on_shutdown(self, conn: TcpConnection) -> None:
        self.shutdowns += 1
        conn.send(b"bye\n")
        conn.close()

    def on_close(self, conn: TcpConnection) -> None:
        self.closed.append(conn.peer)


class PeerEchoInPlace(PeerEcho):
    """The same, reading whole lines in place (``on_read``): the fast path."""

    def __init__(self) -> None:
        super().__init__()
        self.in_place: list[bytes] = []

    def on_read(self, conn: TcpConnection, data: memoryview) -> int:
        chunk = bytes(data)
        self.in_place.append(chunk)
        end = chunk.rfind(b"\n") + 1
        for line in chunk[:end].splitlines(keepends=True):
            conn.send(self.reply(conn, line))
        return end


@pytest.fixture
def lt() -> Iterator[LoopThread]:
    with LoopThread(name="proxy") as thread:
        yield thread


def serve(
    lt: LoopThread,
    inner: PeerEcho,
    trust: ProxyTrust = LOOPBACK_ONLY,
    loops: int = 0,
    **options: Any,
) -> tuple[TcpServer, ProxyProtocolHandler]:
    front = ProxyProtocolHandler(inner, trust, **options)
    inner.front = front
    server = lt.call(lambda: TcpServer(lt.loop, "127.0.0.1:0", front, loops=loops).start())
    return server, front


def connect(server: TcpServer) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def read_line(sock: socket.socket, lines: int = 1) -> bytes:
    data = b""
    while data.count(b"\n") < lines:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def closed_by_server(sock: socket.socket) -> bool:
    """The server closed without a byte (EOF, or a reset since our data went unread)."""
    try:
        return sock.recv(4096) == b""
    except ConnectionResetError:
        return True


def proxy_log(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "ioreactor.proxy_protocol"]


@pytest.mark.parametrize("inner_kind", [PeerEcho, PeerEchoInPlace])
@pytest.mark.parametrize("header", [V1, V2], ids=["v1", "v2"])
def test_header_and_data_in_one_send_give_the_client_address(
    loop_thread: LoopThread, header: bytes, inner_kind: type[PeerEcho]
) -> None:
    """On every backend, for both delegation paths (in place and through conn.input):
    the bytes after the header, in the same segment, reach the inner handler, which
    sees the client of the header as the peer and the proxy as proxy_peer."""
    inner = inner_kind()
    server, front = serve(loop_thread, inner)
    try:
        with connect(server) as sock:
            sock.sendall(header + b"hello\n")
            assert read_line(sock) == b"203.0.113.7 4242 hello\n"
            sock.sendall(b"again\n")
            assert read_line(sock) == b"203.0.113.7 4242 again\n"
            proxy = sock.getsockname()
        assert loop_thread.wait_until(lambda: len(inner.closed) == 1)
        [(peer, proxy_peer, seen, context)] = inner.connected
        assert peer == CLIENT and proxy_peer == proxy and context is None
        assert seen is not None and seen.version == (1 if header is V1 else 2)
        assert seen.destination == SERVICE and seen.size == len(header)
        assert seen.unique_id == (None if header is V1 else b"req-1")
        assert inner.closed == [CLIENT]
        assert inner.drains >= 2  # on_write_complete is forwarded once relayed
        if isinstance(inner, PeerEchoInPlace):
            assert inner.in_place[0] == b"hello\n"  # in place, the header cut off
        assert front.stats.as_dict() == {
            "relayed": 1,
            "local": 0,
            "direct": 0,
            "untrusted": 0,
            "malformed": 0,
            "timeouts": 0,
            "abandoned": 0,
        }
    finally:
        loop_thread.call(server.close)


def test_ipv6_client_named_in_a_v2_header(lt: LoopThread) -> None:
    inner = PeerEchoInPlace()
    server, _ = serve(lt, inner)
    client = ("2001:db8::7", 60000, 0, 0)
    header = encode_v2(family=socket.AF_INET6, source=client, destination=("2001:db8::1", 80, 0, 0))
    try:
        with connect(server) as sock:
            sock.sendall(header + b"hi\n")
            assert read_line(sock) == b"2001:db8::7 60000 hi\n"
        assert inner.connected[0][0] == client  # the form accept() gives IPv6 peers
    finally:
        lt.call(server.close)


@pytest.mark.parametrize("cut", [1, 5, 6, 12, 13, 15, 16, 17, len(V2) - 1])
def test_v2_header_split_across_reads(lt: LoopThread, cut: int) -> None:
    inner = PeerEchoInPlace()
    server, front = serve(lt, inner)
    try:
        with connect(server) as sock:
            sock.sendall(V2[:cut])
            time.sleep(0.05)  # a read of its own on the server
            assert inner.connected == []  # nothing reaches inner before the header is whole
            sock.sendall(V2[cut:] + b"rest\n")
            assert read_line(sock) == b"203.0.113.7 4242 rest\n"
        assert front.stats.relayed == 1
    finally:
        lt.call(server.close)


@pytest.mark.parametrize("inner_kind", [PeerEcho, PeerEchoInPlace])
def test_v1_header_arriving_byte_by_byte(lt: LoopThread, inner_kind: type[PeerEcho]) -> None:
    inner = inner_kind()
    server, front = serve(lt, inner)
    try:
        with connect(server) as sock:
            for byte in V1:
                sock.sendall(bytes([byte]))
                time.sleep(0.002)
            sock.sendall(b"x\n")
            assert read_line(sock) == b"203.0.113.7 4242 x\n"
        assert front.stats.relayed == 1 and front.stats.malformed == 0
    finally:
        lt.call(server.close)


@pytest.mark.parametrize(
    "header",
    [
        encode_v2(command=Command.LOCAL, family=socket.AF_UNSPEC, protocol=None),
        b"PROXY UNKNOWN\r\n",
    ],
    ids=["v2 LOCAL", "v1 UNKNOWN"],
)
def test_local_and_unknown_headers_keep_the_real_address(lt: LoopThread, header: bytes) -> None:
    inner = PeerEcho()
    server, front = serve(lt, inner)
    try:
        with connect(server) as sock:
            sock.sendall(header + b"check\n")
            host, port = sock.getsockname()
            assert read_line(sock) == f"{host} {port} check\n".encode()
        peer, proxy_peer, seen, _ = inner.connected[0]
        assert peer == proxy_peer == (host, port)
        assert seen is not None and not seen.relayed
        assert front.stats.local == 1 and front.stats.relayed == 0
    finally:
        lt.call(server.close)


def test_untrusted_peer_is_refused_when_a_header_is_required(
    lt: LoopThread, caplog: pytest.LogCaptureFixture
) -> None:
    inner = PeerEcho()
    server, front = serve(lt, inner, ProxyTrust(["10.0.0.0/8"]))
    try:
        with caplog.at_level(logging.WARNING, logger="ioreactor.proxy_protocol"):
            with connect(server) as sock:
                sock.sendall(V1 + b"hello\n")
                assert closed_by_server(sock)
            assert lt.wait_until(lambda: server.connection_count == 0)
        assert front.stats.untrusted == 1
        assert inner.connected == [] and inner.closed == []  # inner never heard of it
        [line] = proxy_log(caplog)
        assert "is not a trusted proxy" in line
    finally:
        lt.call(server.close)


def test_untrusted_peer_is_served_directly_when_a_header_is_optional(lt: LoopThread) -> None:
    """Its bytes are never read as a header: a forged PROXY line is just data."""
    inner = PeerEcho()
    server, front = serve(lt, inner, ProxyTrust(["10.0.0.0/8"]), required=False)
    try:
        with connect(server) as sock:
            sock.sendall(V1 + b"hello\n")
            host, port = sock.getsockname()
            expected = f"{host} {port} ".encode() + V1 + f"{host} {port} hello\n".encode()
            assert read_line(sock, lines=2) == expected
        assert inner.connected[0][:3] == ((host, port), None, None)
        assert front.stats.direct == 1 and front.stats.relayed == 0
    finally:
        lt.call(server.close)


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "not a PROXY protocol header"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 99999 1\r\nhello\n", "source port '99999'"),
        (V2[:12] + b"\x21\x11\x00\x04abcd", "AF_INET needs 12"),
    ],
    ids=["http", "v1 port", "v2 block"],
)
def test_malformed_header_closes_that_connection_only(
    lt: LoopThread, caplog: pytest.LogCaptureFixture, bad: bytes, message: str
) -> None:
    inner = PeerEchoInPlace()
    server, front = serve(lt, inner)
    try:
        with connect(server) as good:
            good.sendall(V1 + b"first\n")
            assert read_line(good) == b"203.0.113.7 4242 first\n"
            with caplog.at_level(logging.WARNING, logger="ioreactor.proxy_protocol"):
                with connect(server) as sock:
                    sock.sendall(bad)
                    assert closed_by_server(sock)
                assert lt.wait_until(lambda: front.stats.malformed == 1)
            good.sendall(b"still\n")
            assert read_line(good) == b"203.0.113.7 4242 still\n"
        [line] = proxy_log(caplog)
        assert message in line and "closing the connection from 127.0.0.1" in line
        assert len(inner.connected) == 1
    finally:
        lt.call(server.close)


def test_header_not_complete_in_time_closes_the_connection(
    lt: LoopThread, caplog: pytest.LogCaptureFixture
) -> None:
    inner = PeerEcho()
    server, front = serve(lt, inner, timeout=0.3)
    try:
        with caplog.at_level(logging.WARNING, logger="ioreactor.proxy_protocol"):
            with connect(server) as sock:
                started = time.monotonic()
                sock.sendall(V1[:20])
                assert closed_by_server(sock)
                assert 0.25 <= time.monotonic() - started < TIMEOUT
            assert lt.wait_until(lambda: server.connection_count == 0)
        assert front.stats.timeouts == 1 and inner.connected == []
        [line] = proxy_log(caplog)
        assert "no complete header after 0.3 s (20 bytes)" in line
    finally:
        lt.call(server.close)


def test_a_header_in_time_is_not_cut_by_the_timeout(lt: LoopThread) -> None:
    inner = PeerEcho()
    server, front = serve(lt, inner, timeout=0.3)
    try:
        with connect(server) as sock:
            sock.sendall(V1 + b"a\n")
            assert read_line(sock) == b"203.0.113.7 4242 a\n"
            time.sleep(0.6)  # past the header timeout: the relayed connection lives on
            sock.sendall(b"b\n")
            assert read_line(sock) == b"203.0.113.7 4242 b\n"
        assert front.stats.timeouts == 0
    finally:
        lt.call(server.close)


def test_peer_closing_mid_header_is_malformed_and_before_it_abandoned(lt: LoopThread) -> None:
    inner = PeerEcho()
    server, front = serve(lt, inner)
    try:
        with connect(server) as sock:
            sock.sendall(V2[:10])
            time.sleep(0.05)
        with connect(server):
            pass
        assert lt.wait_until(lambda: front.stats.malformed == 1 and front.stats.abandoned == 1)
        assert lt.wait_until(lambda: server.connection_count == 0)
        assert inner.connected == [] and inner.closed == []
    finally:
        lt.call(server.close)


def test_eof_after_the_header_goes_to_the_inner_handler(lt: LoopThread) -> None:
    inner = PeerEcho()
    server, _ = serve(lt, inner)
    try:
        with connect(server) as sock:
            sock.sendall(V1 + b"last\n")
            sock.shutdown(socket.SHUT_WR)
            assert read_line(sock) == b"203.0.113.7 4242 last\n"
            assert sock.recv(10) == b""
        assert lt.wait_until(lambda: inner.closed == [CLIENT])
        assert inner.eofs == 1
    finally:
        lt.call(server.close)


def test_graceful_shutdown_closes_waiting_connections_and_asks_relayed_ones(
    lt: LoopThread,
) -> None:
    inner = PeerEcho()
    server, front = serve(lt, inner)
    with connect(server) as relayed, connect(server) as waiting:
        relayed.sendall(V1 + b"hi\n")
        assert read_line(relayed) == b"203.0.113.7 4242 hi\n"
        waiting.sendall(V1[:5])
        assert lt.wait_until(lambda: server.connection_count == 2)
        server.shutdown(timeout=TIMEOUT)
        assert read_line(relayed) == b"bye\n"  # inner.on_shutdown ran
        assert relayed.recv(10) == b""
        assert closed_by_server(waiting)
    assert lt.wait_until(lambda: server.connection_count == 0)
    assert inner.shutdowns == 1 and inner.closed == [CLIENT]
    assert front.stats.abandoned == 1  # the waiting one: closed by us, not counted as bad
    lt.call(server.close)


def test_inner_on_connection_failing_closes_and_still_tells_inner(lt: LoopThread) -> None:
    class Failing(PeerEcho):
        def on_connection(self, conn: TcpConnection) -> None:
            raise RuntimeError("on purpose")

    inner = Failing()
    server, _ = serve(lt, inner)
    try:
        with connect(server) as sock:
            sock.sendall(V1 + b"x\n")
            assert closed_by_server(sock)
        assert lt.wait_until(lambda: inner.closed == [CLIENT])
    finally:
        lt.call(server.close)


def test_sub_loops_each_connection_gets_its_own_client(lt: LoopThread) -> None:
    inner = PeerEchoInPlace()
    server, front = serve(lt, inner, loops=2)
    try:
        socks = [connect(server) for _ in range(10)]
        for i, sock in enumerate(socks):
            sock.sendall(encode_v1(socket.AF_INET, (f"192.0.2.{i}", 1000 + i), SERVICE) + b"q\n")
        for i, sock in enumerate(socks):
            assert read_line(sock) == f"192.0.2.{i} {1000 + i} q\n".encode()
            sock.close()
        assert lt.wait_until(lambda: len(inner.closed) == 10)
        assert sorted(inner.closed) == sorted((f"192.0.2.{i}", 1000 + i) for i in range(10))
        assert front.stats.relayed == 10
    finally:
        lt.call(server.close)


def test_handler_options_are_checked() -> None:
    with pytest.raises(ValueError, match="timeout must be > 0"):
        ProxyProtocolHandler(PeerEcho(), LOOPBACK_ONLY, timeout=0)
    with pytest.raises(ValueError, match=r"max_size must be in 16\.\.65551"):
        ProxyProtocolHandler(PeerEcho(), LOOPBACK_ONLY, max_size=65552)
