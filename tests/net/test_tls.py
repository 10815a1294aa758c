"""TLS in the connection (:mod:`ioreactor.net.tls`) on every backend: real handshakes with
Python's ``ssl`` clients and ioreactor's own client, bytes checked one by one, the
handler's view (on_connection after the handshake, plaintext in on_read/on_message, the
peer certificate, ALPN, resumption), closing with and without ``close_notify``,
half-close, water marks counting ciphertext, paused reading, codecs and the heartbeat
on top, Unix stream sockets and sub-loop threads.

The server runs on a ``LoopThread`` (the ``loop_thread`` fixture: one run per backend).
"""

from __future__ import annotations

import gc
import os
import random
import socket
import ssl
import threading
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ioreactor.codec import FrameHandler, LengthFieldCodec
from ioreactor.echo import EchoHandler
from ioreactor.heartbeat import HeartbeatHandler
from ioreactor.net.buffer import Buffer
from ioreactor.net.client import TcpClient
from ioreactor.net.connection import TcpConnection
from ioreactor.net.handlers import Handler
from ioreactor.net.server import TcpServer
from ioreactor.net.tls import TlsLayer, TlsStream
from ioreactor.net.tls_context import client_context, server_context
from ioreactor.testing import LoopThread, recv_exactly
from support.tls import Pki, shared_pki, tls_connect, tls_echo

LIVENESS = 20.0
MiB = 1024 * 1024


@pytest.fixture
def pki() -> Pki:
    return shared_pki()


class Recorder(Handler):
    """Records what the handler sees, on the loop thread; echoes unless told not to."""

    def __init__(self, *, echo: bool = True) -> None:
        self.echo = echo
        self.connections: list[TcpConnection] = []
        self.seen_at_connection: list[dict[str, Any]] = []
        self.data = bytearray()
        self.eofs = 0
        self.closes: list[TcpConnection] = []
        self.high_water: list[int] = []

    def on_connection(self, conn: TcpConnection) -> None:
        tls = conn.tls
        assert tls is not None
        self.connections.append(conn)
        self.seen_at_connection.append(
            {
                "established": tls.established,
                "version": tls.version,
                "alpn": tls.alpn_protocol,
                "peer": tls.peer_certificate(),
                "reused": tls.session_reused,
            }
        )

    def on_message(self, conn: TcpConnection, buffer: Buffer) -> None:
        chunk = buffer.read_all()
        self.data += chunk
        if self.echo:
            conn.send(chunk)

    def on_high_water_mark(self, conn: TcpConnection, size: int) -> None:
        self.high_water.append(size)

    def on_eof(self, conn: TcpConnection) -> bool:
        self.eofs += 1
        return False

    def on_close(self, conn: TcpConnection) -> None:
        self.closes.append(conn)


def serve(lt: LoopThread, handler: Handler, context: ssl.SSLContext, **options: Any) -> TcpServer:
    address = options.pop("address", ("127.0.0.1", 0))
    return lt.call(lambda: TcpServer(lt.loop, address, handler, ssl=context, **options).start())


def port_of(lt: LoopThread, server: TcpServer) -> tuple[str, int]:
    port: int = lt.call(lambda: server.port)
    return ("127.0.0.1", port)


def wait(lt: LoopThread, predicate: Callable[[], bool], what: str) -> None:
    assert lt.wait_until(predicate, LIVENESS), f"timed out waiting for {what}"


def payload(n: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(n)


# -- echo through TLS ---------------------------------------------------------------------


@pytest.mark.parametrize("size", [1, 5000, 3 * MiB + 17])
def test_echo_through_tls_is_byte_exact(loop_thread: LoopThread, pki: Pki, size: int) -> None:
    server = serve(loop_thread, EchoHandler(), pki.server_context())
    data = payload(size, seed=size)
    assert tls_echo(port_of(loop_thread, server), pki.client_context(), data) == data
    stats = loop_thread.call(lambda: server.tls.stats.as_dict())  # type: ignore[union-attr]
    assert stats["handshakes"] == 1
    assert sum(stats.values()) - stats["handshakes"] <= 1  # (a FIN, maybe before unwrap)


def test_many_connections_each_echo_their_own_bytes(loop_thread: LoopThread, pki: Pki) -> None:
    server = serve(loop_thread, EchoHandler(), pki.server_context())
    address = port_of(loop_thread, server)
    context = pki.client_context()
    socks = [tls_connect(address, context) for _ in range(40)]
    try:
        for i, sock in enumerate(socks):
            sock.sendall(payload(20_000, seed=i))
        for i, sock in enumerate(socks):
            assert recv_exactly(sock, 20_000) == payload(20_000, seed=i)
    finally:
        for sock in socks:
            sock.close()


def test_on_connection_comes_after_the_handshake_with_what_it_settled(
    loop_thread: LoopThread, pki: Pki
) -> None:
    context = server_context(
        pki.server.cert,
        pki.server.key,
        ca_certs=pki.ca_file,
        client_cert="required",
        alpn=["http/1.1"],
    )
    handler = Recorder()
    server = serve(loop_thread, handler, context)
    client = pki.client_context(cert=pki.client)
    client.set_alpn_protocols(["h2", "http/1.1"])
    with tls_connect(port_of(loop_thread, server), client) as sock:
        sock.sendall(b"ping")
        assert recv_exactly(sock, 4) == b"ping"
        assert sock.selected_alpn_protocol() == "http/1.1"
    wait(loop_thread, lambda: len(handler.closes) == 1, "the close")
    (seen,) = handler.seen_at_connection
    assert seen["established"] and seen["version"] in ("TLSv1.3", "TLSv1.2")
    assert seen["alpn"] == "http/1.1"
    assert seen["reused"] is False
    subject = dict(item for rdn in seen["peer"]["subject"] for item in rdn)
    assert subject["commonName"] == "client"  # mutual TLS: the client's certificate


def test_the_handler_never_sees_a_connection_whose_handshake_failed(
    loop_thread: LoopThread, pki: Pki
) -> None:
    handler = Recorder()
    server = serve(loop_thread, handler, pki.server_context())
    untrusting = ssl.create_default_context(cafile=pki.other_ca_file)
    with pytest.raises(ssl.SSLCertVerificationError):
        tls_connect(port_of(loop_thread, server), untrusting)
    wait(
        loop_thread,
        lambda: server.tls is not None and server.tls.stats.handshake_failures == 1,
        "the failed handshake",
    )
    wait(loop_thread, lambda: server.connection_count == 0, "the connection to close")
    assert handler.connections == [] and handler.closes == []


# -- closing ------------------------------------------------------------------------------


class CloseAfterFirst(Recorder):
    def __init__(self, how: str) -> None:
        super().__init__(echo=False)
        self.how = how

    def on_message(self, conn: TcpConnection, buffer: Buffer) -> None:
        super().on_message(conn, buffer)
        conn.send(b"bye")
        getattr(conn, self.how)()


def test_close_sends_close_notify_after_the_queued_output(
    loop_thread: LoopThread, pki: Pki
) -> None:
    server = serve(loop_thread, CloseAfterFirst("close"), pki.server_context())
    raw = socket.create_connection(port_of(loop_thread, server), timeout=LIVENESS)
    context = pki.client_context()
    with context.wrap_socket(raw, server_hostname="localhost", suppress_ragged_eofs=False) as sock:
        sock.sendall(b"hello")
        assert recv_exactly(sock, 3) == b"bye"
        # A clean TLS end: close_notify (recv() == b""), not a bare FIN (SSLEOFError).
        assert sock.recv(100) == b""


def test_force_close_sends_no_close_notify(loop_thread: LoopThread, pki: Pki) -> None:
    server = serve(loop_thread, CloseAfterFirst("force_close"), pki.server_context())
    raw = socket.create_connection(port_of(loop_thread, server), timeout=LIVENESS)
    context = pki.client_context()
    with context.wrap_socket(raw, server_hostname="localhost", suppress_ragged_eofs=False) as sock:
        sock.sendall(b"hello")
        with pytest.raises((ssl.SSLEOFError, ConnectionResetError)):
            while sock.recv(100):
                pass


class HalfClose(Recorder):
    def on_connection(self, conn: TcpConnection) -> None:
        super().on_connection(conn)
        conn.send(b"greeting")
        conn.shutdown()

    def on_message(self, conn: TcpConnection, buffer: Buffer) -> None:
        self.data += buffer.read_all()


def test_shutdown_says_close_notify_and_keeps_reading(loop_thread: LoopThread, pki: Pki) -> None:
    handler = HalfClose()
    server = serve(loop_thread, handler, pki.server_context())
    with tls_connect(port_of(loop_thread, server), pki.client_context()) as sock:
        assert recv_exactly(sock, 8) == b"greeting"
        assert sock.recv(100) == b""  # close_notify: the server's half is done
        sock.sendall(b"still talking")  # ours is not
        wait(loop_thread, lambda: bytes(handler.data) == b"still talking", "the late data")
        sock.unwrap()  # our close_notify: both halves done, the server closes
    wait(loop_thread, lambda: len(handler.closes) == 1, "the close")
    assert handler.closes[0].error is None  # a clean end, not a TLS error
    stats = loop_thread.call(lambda: server.tls.stats.as_dict())  # type: ignore[union-attr]
    assert stats["protocol_errors"] == 0 and stats["no_close_notify"] == 0


def test_a_peers_close_notify_is_its_eof(loop_thread: LoopThread, pki: Pki) -> None:
    handler = Recorder(echo=False)
    server = serve(loop_thread, handler, pki.server_context())
    with tls_connect(port_of(loop_thread, server), pki.client_context()) as sock:
        sock.sendall(b"last words")
        raw = sock.unwrap()  # close_notify both ways (the server answers on_eof -> close)
        raw.close()
    wait(loop_thread, lambda: len(handler.closes) == 1, "the close")
    assert bytes(handler.data) == b"last words" and handler.eofs == 1
    stats = loop_thread.call(lambda: server.tls.stats.as_dict())  # type: ignore[union-attr]
    assert stats["no_close_notify"] == 0 and stats["truncated"] == 0


# -- flow control -------------------------------------------------------------------------


class Flood(Recorder):
    """Sends ``total`` bytes in 64 KiB pieces, refilling on each drain."""

    def __init__(self, total: int) -> None:
        super().__init__(echo=False)
        self.total = total
        self.sent = 0
        self.max_output = 0

    def on_connection(self, conn: TcpConnection) -> None:
        super().on_connection(conn)
        self.on_write_complete(conn)

    def on_write_complete(self, conn: TcpConnection) -> None:
        while self.sent < self.total and conn.output_size < conn.high_water_mark:
            piece = payload(min(65536, self.total - self.sent), seed=self.sent)
            conn.send(piece)
            self.sent += len(piece)
            self.max_output = max(self.max_output, conn.output_size)


def test_water_marks_count_ciphertext_and_pause_reading(loop_thread: LoopThread, pki: Pki) -> None:
    total = 8 * MiB
    handler = Flood(total)
    server = serve(
        loop_thread, handler, pki.server_context(), high_water_mark=256 * 1024, low_water_mark=0
    )
    raw = socket.create_connection(port_of(loop_thread, server), timeout=LIVENESS)
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * 1024)
    with pki.client_context().wrap_socket(raw, server_hostname="localhost") as sock:
        wait(loop_thread, lambda: bool(handler.high_water), "the high water mark")
        conn = handler.connections[0]
        # Reading paused, and what is queued is ciphertext: more than the plaintext
        # sent since the last drain would be, by the records' overhead.
        assert loop_thread.call(lambda: conn.reading) is False
        assert handler.high_water[0] >= 256 * 1024
        received = bytearray()
        while len(received) < total:
            chunk = sock.recv(MiB)
            assert chunk
            received += chunk
        expected = b"".join(
            payload(min(65536, total - at), seed=at) for at in range(0, total, 65536)
        )
        assert received == expected
        wait(loop_thread, lambda: conn.reading, "reading to resume")


class PausingEcho(Recorder):
    """Pauses reading after each delivery, resumes it from a timer: a handler that
    applies back-pressure of its own."""

    def __init__(self) -> None:
        super().__init__(echo=False)
        self.deliveries = 0

    def on_read(self, conn: TcpConnection, data: memoryview) -> int:
        self.deliveries += 1
        self.data += data
        conn.send(bytes(data))
        conn.pause_reading()
        conn.loop.call_later(0.002, conn.resume_reading)
        return len(data)


def test_plaintext_left_in_the_session_when_paused_is_delivered_on_resume(
    loop_thread: LoopThread, pki: Pki
) -> None:
    handler = PausingEcho()
    server = serve(loop_thread, handler, pki.server_context())
    data = payload(6 * MiB, seed=7)
    received = tls_echo(port_of(loop_thread, server), pki.client_context(), data)
    assert len(received) == len(data), "stalled with plaintext waiting in the session"
    assert received == data


# -- the client ---------------------------------------------------------------------------


class ClientRecorder(Recorder):
    def __init__(self) -> None:
        super().__init__(echo=False)
        self.opened = threading.Event()

    def on_connection(self, conn: TcpConnection) -> None:
        super().on_connection(conn)
        conn.send(b"hello from the client")
        self.opened.set()


def test_tcp_client_speaks_tls_and_resumes_its_session_on_reconnect(
    loop_thread: LoopThread, pki: Pki
) -> None:
    server_handler = Recorder()
    server = serve(loop_thread, server_handler, server_context(pki.server.cert, pki.server.key))
    handler = ClientRecorder()
    address = port_of(loop_thread, server)
    client = loop_thread.call(
        lambda: TcpClient(
            loop_thread.loop,
            address,
            handler,
            ssl=client_context(pki.ca_file),
            server_hostname="localhost",
            reconnect=True,
            backoff_initial=0.01,
        ).connect()
    )
    wait(loop_thread, lambda: bytes(handler.data) == b"hello from the client", "the echo")
    first_conn = handler.connections[0]
    loop_thread.call(first_conn.close)  # the client reconnects, offering the session
    wait(loop_thread, lambda: len(handler.connections) == 2, "the reconnect")
    wait(loop_thread, lambda: len(handler.data) == 2 * 21, "the second echo")
    first, second = handler.seen_at_connection
    assert first["reused"] is False
    assert second["reused"] is True  # the ticket of the first connection
    assert server.tls is not None and server.tls.stats.resumed == 1
    loop_thread.call(client.close)


def test_a_client_names_the_server_it_checks(loop_thread: LoopThread, pki: Pki) -> None:
    server = serve(loop_thread, Recorder(), pki.server_context())
    with pytest.raises(ValueError, match="server_hostname"):
        TcpClient(loop_thread.loop, "unix:///tmp/x.sock", Handler(), ssl=client_context())
    handler = ClientRecorder()
    address = port_of(loop_thread, server)
    client = loop_thread.call(
        lambda: TcpClient(
            loop_thread.loop, address, handler, ssl=client_context(pki.ca_file), retry=False
        ).connect()
    )
    assert client.server_hostname == "127.0.0.1"  # the address's host (an IP SAN)
    assert handler.opened.wait(LIVENESS)
    loop_thread.call(client.close)


def test_layers_refuse_the_wrong_side_of_context() -> None:
    with pytest.raises(ValueError, match="server context"):
        TlsLayer(ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT), server_side=True)
    with pytest.raises(ValueError, match="client context"):
        TlsLayer(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER), server_side=False)
    with pytest.raises(TypeError):
        TlsLayer("context.pem", server_side=True)  # type: ignore[arg-type]
    layer = TlsLayer(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER), server_side=True)
    assert layer.context.options & ssl.OP_NO_RENEGOTIATION


# -- what runs on top, and where ------------------------------------------------------------


class FrameEcho(FrameHandler):
    def on_frame(self, conn: TcpConnection, frame: bytes) -> None:
        conn.send(self.codec.encode(frame))


def test_length_field_frames_over_tls(loop_thread: LoopThread, pki: Pki) -> None:
    codec = LengthFieldCodec(4, initial_bytes_to_strip=4, max_frame_length=1 << 20)
    server = serve(loop_thread, FrameEcho(codec), pki.server_context())
    frames = [payload(n, seed=n) for n in (0, 1, 100, 70_000, 1 << 19)]
    wire = b"".join(codec.encode(f) for f in frames)
    with tls_connect(port_of(loop_thread, server), pki.client_context()) as sock:
        for i in range(0, len(wire), 999):  # split across records at odd places
            sock.sendall(wire[i : i + 999])
        assert recv_exactly(sock, len(wire)) == wire


def test_heartbeat_over_tls_pings_and_declares_a_silent_peer_dead(
    loop_thread: LoopThread, pki: Pki
) -> None:
    server_side = HeartbeatHandler(interval=0.1, misses=3, active=False)
    server = serve(loop_thread, server_side, pki.server_context())
    client_side = HeartbeatHandler(interval=0.1, misses=3, active=True)
    address = port_of(loop_thread, server)
    client = loop_thread.call(
        lambda: TcpClient(
            loop_thread.loop,
            address,
            client_side,
            ssl=client_context(pki.ca_file),
            server_hostname="localhost",
            retry=False,
        ).connect()
    )
    wait(loop_thread, lambda: client_side.pongs_received >= 3, "pongs through TLS")
    # The server stops reading: neither end hears the other any more; one declares the
    # other dead (whichever verdict comes first closes the connection).
    loop_thread.call(lambda: next(iter(server.connections)).pause_reading())
    wait(
        loop_thread,
        lambda: client_side.peers_declared_dead + server_side.peers_declared_dead == 1,
        "the dead-peer verdict",
    )
    loop_thread.call(client.close)


def test_unix_stream_socket_with_tls(loop_thread: LoopThread, pki: Pki, tmp_path: Path) -> None:
    path = str(tmp_path / "tls.sock")
    server = serve(loop_thread, EchoHandler(), pki.server_context(), address=f"unix://{path}")
    with tls_connect(path, pki.client_context()) as sock:
        sock.sendall(b"over a unix socket")
        assert recv_exactly(sock, 18) == b"over a unix socket"
    loop_thread.call(server.close)
    assert not os.path.exists(path)


def test_sub_loop_threads_each_serve_tls(loop_thread: LoopThread, pki: Pki) -> None:
    server = serve(loop_thread, EchoHandler(), pki.server_context(), loops=2)
    address = port_of(loop_thread, server)
    socks = [tls_connect(address, pki.client_context()) for _ in range(6)]
    try:
        for i, sock in enumerate(socks):
            sock.sendall(b"thread %d" % i)
        for i, sock in enumerate(socks):
            assert recv_exactly(sock, len(b"thread %d" % i)) == b"thread %d" % i
        owners = {conn.loop for conn in server.connections}
        assert len(owners) == 2
        assert all(isinstance(conn, TlsStream) for conn in server.connections)
    finally:
        for sock in socks:
            sock.close()
        loop_thread.call(server.close)


def test_send_from_another_thread_is_encrypted_too(loop_thread: LoopThread, pki: Pki) -> None:
    handler = Recorder(echo=False)
    server = serve(loop_thread, handler, pki.server_context())
    with tls_connect(port_of(loop_thread, server), pki.client_context()) as sock:
        wait(loop_thread, lambda: len(handler.connections) == 1, "the connection")
        conn = handler.connections[0]
        senders = [threading.Thread(target=lambda i=i: conn.send(b"%03d;" % i)) for i in range(50)]
        for t in senders:
            t.start()
        for t in senders:
            t.join()
        got = recv_exactly(sock, 200)
        assert sorted(got.split(b";")[:-1]) == [b"%03d" % i for i in range(50)]


# -- the record framing the connection follows ------------------------------------------------


def test_record_framing_is_followed_across_every_split(pki: Pki) -> None:
    """A FIN is told apart between records and inside one (header or body) however the
    reads cut the stream: every split point, one and two cuts."""
    from ioreactor.net.tls import TlsSession, _follow_records

    layer = TlsLayer(pki.server_context(), server_side=True)
    lengths = [0, 1, 4, 300, 5]
    stream = b"".join(b"\x17\x03\x03" + n.to_bytes(2, "big") + b"x" * n for n in lengths)
    ends = set()
    at = 0
    for n in lengths:
        at += 5 + n
        ends.add(at)

    def follow(*chunks: bytes) -> bool:
        session = TlsSession(layer, Handler())
        for chunk in chunks:
            _follow_records(session, memoryview(chunk))
        return not session.record_left and not session.record_header

    for cut in range(len(stream) + 1):
        assert follow(stream[:cut]) == (cut in ends or cut == 0), cut
        assert follow(stream[:cut], stream[cut:])
    for first in range(0, len(stream), 7):
        for second in range(first, len(stream) + 1):
            end = follow(stream[:first], stream[first:second])
            assert end == (second in ends or second == 0), (first, second)


class KeepsItself(Handler):
    """Holds its connection in ``conn.context`` (a reference cycle, a common pattern)
    and a weak reference to the connection's SSL object."""

    def __init__(self) -> None:
        self.ssl_objects: list[weakref.ref[ssl.SSLObject]] = []
        self.closed: list[TcpConnection] = []

    def on_connection(self, conn: TcpConnection) -> None:
        conn.context = {"self": conn}
        assert conn.tls is not None
        self.ssl_objects.append(weakref.ref(conn.tls.ssl_object()))

    def on_close(self, conn: TcpConnection) -> None:
        assert conn.tls is not None and conn.tls.version is not None  # still readable here
        self.closed.append(conn)


def test_the_ssl_state_is_freed_at_close_even_in_a_reference_cycle(
    loop_thread: LoopThread, pki: Pki
) -> None:
    handler = KeepsItself()
    server = serve(loop_thread, handler, pki.server_context())
    gc.disable()  # only reference counting: what frees memory between collections
    try:
        with tls_connect(port_of(loop_thread, server), pki.client_context()) as sock:
            sock.sendall(b"x")
            wait(loop_thread, lambda: len(handler.ssl_objects) == 1, "the connection")
        wait(loop_thread, lambda: len(handler.closed) == 1, "the close")
        assert handler.ssl_objects[0]() is None  # OpenSSL's state went with the close
        conn = handler.closed[0]
        assert conn.tls is not None and conn.tls.version is None and conn.tls.session is None
    finally:
        gc.enable()
