"""Bad TLS input on every backend: each case closes only its own connection, with one
log line of the TLS layer at the level the case deserves and its counter in
:class:`~ioreactor.net.tls.TlsStats`, while a well-behaved client on the same server
goes on working -- and no exception reaches the loop.

Cases (issue 18): garbage instead of a ClientHello, plaintext HTTP, a ClientHello
trickled byte by byte (held to the handshake timeout), a truncated record, a peer that
never sends close_notify, a record that fails to decrypt, the peer closing mid-handshake,
a client certificate from the wrong CA under mutual TLS, and on the client side an
expired or wrong-host server certificate.
"""

from __future__ import annotations

import logging
import socket
import ssl
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from ioreactor.echo import EchoHandler
from ioreactor.net.client import TcpClient
from ioreactor.net.connection import TcpConnection
from ioreactor.net.handlers import Handler
from ioreactor.net.server import TcpServer
from ioreactor.net.tls import TlsStats
from ioreactor.net.tls_context import client_context, server_context
from ioreactor.testing import LoopThread, recv_exactly
from support.tls import MemoryTlsClient, Pki, client_hello, shared_pki, tls_connect, tls_log_records

LIVENESS = 20.0


@pytest.fixture
def pki() -> Pki:
    return shared_pki()


@pytest.fixture
def tls_caplog(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """Every record of the TLS layer (DEBUG up); none may come from the loop."""
    caplog.set_level(logging.DEBUG, logger="ioreactor.tls")
    yield caplog
    escaped = [r for r in caplog.records if r.name == "ioreactor.loop" and r.levelno >= 40]
    assert not escaped, f"an exception reached the loop: {escaped[0].getMessage()}"


class Server:
    """An echo server with TLS on the loop thread, and the checks every case shares."""

    def __init__(self, lt: LoopThread, context: ssl.SSLContext, **options: Any) -> None:
        self.lt = lt
        self.tcp = lt.call(
            lambda: TcpServer(
                lt.loop, ("127.0.0.1", 0), EchoHandler(), ssl=context, **options
            ).start()
        )
        self.address: tuple[str, int] = ("127.0.0.1", lt.call(lambda: self.tcp.port))

    @property
    def stats(self) -> TlsStats:
        assert self.tcp.tls is not None
        return self.tcp.tls.stats

    def wait(self, predicate: Callable[[], bool], what: str) -> None:
        assert self.lt.wait_until(predicate, LIVENESS), f"timed out waiting for {what}"

    def counted(self, name: str) -> None:
        """``name`` reached 1, every other bad-input counter is 0, no connection is left."""
        self.wait(lambda: getattr(self.stats, name) == 1, name)
        self.wait(lambda: self.tcp.connection_count == 0, "the bad connection to close")
        others = {
            k: v
            for k, v in self.stats.as_dict().items()
            if k not in (name, "handshakes", "resumed") and v
        }
        if name == "peer_rejected":
            others.pop("handshake_failures", None)
        assert others == {}

    def still_serves(self, pki: Pki) -> None:
        with tls_connect(self.address, pki.client_context()) as sock:
            sock.sendall(b"still here")
            assert recv_exactly(sock, 10) == b"still here"


def one_line(caplog: pytest.LogCaptureFixture, level: int, *words: str) -> None:
    """Exactly one record of the TLS layer at ``level`` or above, saying ``words``."""
    records = [r for r in tls_log_records(caplog.records) if r.levelno >= logging.INFO]
    assert len(records) == 1, [r.getMessage() for r in records]
    (record,) = records
    assert record.levelno == level
    for word in words:
        assert word in record.getMessage()


def closed_by_server(sock: socket.socket) -> bytes:
    """Read until the server closes; what it sent meanwhile."""
    data = bytearray()
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass
    return bytes(data)


# -- not TLS at all ---------------------------------------------------------------------------


def test_garbage_instead_of_a_client_hello(
    loop_thread: LoopThread, pki: Pki, tls_caplog: pytest.LogCaptureFixture
) -> None:
    server = Server(loop_thread, pki.server_context())
    with socket.create_connection(server.address, timeout=LIVENESS) as sock:
        sock.sendall(b"\x00garbage" * 50)  # (not 0x16, and no letter: not a request line)
        assert closed_by_server(sock) == b""
    server.counted("not_tls")
    one_line(tls_caplog, logging.INFO, "not TLS")
    server.still_serves(pki)


def test_garbage_that_starts_like_a_handshake_record(
    loop_thread: LoopThread, pki: Pki, tls_caplog: pytest.LogCaptureFixture
) -> None:
    server = Server(loop_thread, pki.server_context())
    with socket.create_connection(server.address, timeout=LIVENESS) as sock:
        sock.sendall(b"\x16\x03\x01\x00\x40" + b"\xff" * 64)
        closed_by_server(sock)  # an alert, then the close
    server.counted("handshake_failures")
    one_line(tls_caplog, logging.INFO, "handshake failed")
    server.still_serves(pki)


@pytest.mark.parametrize("reply", [None, b"HTTP/1.1 400 Bad Request\r\n\r\nuse https\n"])
def test_plaintext_http_is_answered_or_closed(
    loop_thread: LoopThread, pki: Pki, tls_caplog: pytest.LogCaptureFixture, reply: bytes | None
) -> None:
    server = Server(loop_thread, pki.server_context(), ssl_plaintext_reply=reply)
    with socket.create_connection(server.address, timeout=LIVENESS) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        assert closed_by_server(sock) == (reply or b"")
    server.counted("plaintext_http")
    one_line(tls_caplog, logging.INFO, "plaintext HTTP")
    server.still_serves(pki)


# -- slow, cut short, broken ------------------------------------------------------------------


def test_a_trickled_client_hello_is_held_to_the_handshake_timeout(
    loop_thread: LoopThread, pki: Pki, tls_caplog: pytest.LogCaptureFixture
) -> None:
    timeout = 0.6
    server = Server(loop_thread, pki.server_context(), ssl_handshake_timeout=timeout)
    hello = client_hello(pki.client_context())
    with socket.create_connection(server.address, timeout=LIVENESS) as sock:
        start = time.monotonic()
        sent = 0
        try:
            while sent < len(hello):
                sock.sendall(hello[sent : sent + 1])  # one byte every 50 ms
                sent += 1
                time.sleep(0.05)
                if time.monotonic() - start > timeout * 4:
                    break
        except (BrokenPipeError, ConnectionResetError):
            pass
        closed_by_server(sock)
        lived = time.monotonic() - start
    assert sent < len(hello)  # the whole hello never got there
    assert timeout * 0.9 < lived < timeout + 5
    server.counted("handshake_timeouts")
    one_line(tls_caplog, logging.INFO, "no TLS handshake within")
    server.still_serves(pki)


def test_a_truncated_record(
    loop_thread: LoopThread, pki: Pki, tls_caplog: pytest.LogCaptureFixture
) -> None:
    server = Server(loop_thread, pki.server_context())
    client = MemoryTlsClient(server.address, pki.client_context())
    try:
        client.sock.sendall(client.record(b"whole"))
        assert client.receive(5) == b"whole"
        record = client.record(b"cut in half" * 100)
        client.sock.sendall(record[: len(record) // 2])
        client.sock.shutdown(socket.SHUT_WR)  # FIN in the middle of the record
        closed_by_server(client.sock)
    finally:
        client.close()
    server.counted("truncated")
    one_line(tls_caplog, logging.INFO, "middle of a TLS record")
    server.still_serves(pki)


def test_a_peer_that_never_sends_close_notify(
    loop_thread: LoopThread, pki: Pki, tls_caplog: pytest.LogCaptureFixture
) -> None:
    server = Server(loop_thread, pki.server_context())
    client = MemoryTlsClient(server.address, pki.client_context())
    try:
        client.sock.sendall(client.record(b"no goodbye"))
        assert client.receive(10) == b"no goodbye"
        client.sock.shutdown(socket.SHUT_WR)  # a bare FIN: accepted as the end of input
        closed_by_server(client.sock)
    finally:
        client.close()
    server.counted("no_close_notify")
    debug = list(tls_log_records(tls_caplog.records, logging.DEBUG))
    assert len(debug) == 1 and "without close_notify" in debug[0].getMessage()
    assert not [r for r in tls_log_records(tls_caplog.records) if r.levelno >= logging.INFO]
    server.still_serves(pki)


def test_a_record_that_fails_to_decrypt(
    loop_thread: LoopThread, pki: Pki, tls_caplog: pytest.LogCaptureFixture
) -> None:
    server = Server(loop_thread, pki.server_context())
    client = MemoryTlsClient(server.address, pki.client_context())
    try:
        record = bytearray(client.record(b"tampered with"))
        record[-1] ^= 0x01  # the AEAD tag no longer matches
        client.sock.sendall(record)
        closed_by_server(client.sock)  # an alert (bad_record_mac), then the close
    finally:
        client.close()
    server.counted("protocol_errors")
    one_line(tls_caplog, logging.INFO, "TLS error")
    server.still_serves(pki)


def test_a_peer_that_closes_mid_handshake(
    loop_thread: LoopThread, pki: Pki, tls_caplog: pytest.LogCaptureFixture
) -> None:
    server = Server(loop_thread, pki.server_context())
    hello = client_hello(pki.client_context())
    with socket.create_connection(server.address, timeout=LIVENESS) as sock:
        sock.sendall(hello[: len(hello) // 2])
        sock.shutdown(socket.SHUT_WR)
        closed_by_server(sock)
    server.counted("handshake_failures")
    one_line(tls_caplog, logging.INFO, "closed during the TLS handshake")
    server.still_serves(pki)


def test_a_probe_that_connects_and_leaves_is_only_a_debug_line(
    loop_thread: LoopThread, pki: Pki, tls_caplog: pytest.LogCaptureFixture
) -> None:
    server = Server(loop_thread, pki.server_context())
    socket.create_connection(server.address, timeout=LIVENESS).close()  # a health check
    server.wait(lambda: server.tcp.connection_count == 0, "the probe to go")
    assert sum(server.stats.as_dict().values()) == 0
    assert not [r for r in tls_log_records(tls_caplog.records) if r.levelno >= logging.INFO]
    server.still_serves(pki)


# -- certificates ---------------------------------------------------------------------------


def test_client_certificate_from_the_wrong_ca_under_mutual_tls(
    loop_thread: LoopThread, pki: Pki, tls_caplog: pytest.LogCaptureFixture
) -> None:
    context = server_context(
        pki.server.cert, pki.server.key, ca_certs=pki.ca_file, client_cert="required"
    )
    server = Server(loop_thread, context)
    stranger = pki.client_context(cert=pki.stranger)
    # TLS 1.3: the client finishes first, and learns of the refusal on its next read
    with (
        pytest.raises((ssl.SSLError, ConnectionResetError, BrokenPipeError)),
        tls_connect(server.address, stranger) as sock,
    ):
        sock.sendall(b"let me in")
        sock.recv(100)
    server.counted("peer_rejected")
    one_line(tls_caplog, logging.INFO, "certificate verify failed")
    with tls_connect(server.address, pki.client_context(cert=pki.client)) as sock:
        sock.sendall(b"member")
        assert recv_exactly(sock, 6) == b"member"


def test_client_certificate_missing_when_required(
    loop_thread: LoopThread, pki: Pki, tls_caplog: pytest.LogCaptureFixture
) -> None:
    context = server_context(
        pki.server.cert, pki.server.key, ca_certs=pki.ca_file, client_cert="required"
    )
    server = Server(loop_thread, context)
    with (
        pytest.raises((ssl.SSLError, ConnectionResetError, BrokenPipeError)),
        tls_connect(server.address, pki.client_context()) as sock,
    ):
        sock.sendall(b"no certificate")
        sock.recv(100)
    server.counted("peer_rejected")
    one_line(tls_caplog, logging.INFO, "handshake failed")


class Failures(Handler):
    def __init__(self) -> None:
        self.failures: list[OSError] = []
        self.connected = 0

    def on_connection(self, conn: TcpConnection) -> None:
        self.connected += 1


@pytest.mark.parametrize("which", ["expired", "other_host"])
def test_the_client_refuses_a_bad_server_certificate(
    loop_thread: LoopThread, pki: Pki, tls_caplog: pytest.LogCaptureFixture, which: str
) -> None:
    files = getattr(pki, which)
    server = Server(loop_thread, server_context(files.cert, files.key))
    handler = Failures()
    client = loop_thread.call(
        lambda: TcpClient(
            loop_thread.loop,
            server.address,
            handler,
            ssl=client_context(pki.ca_file),
            server_hostname="localhost",
            retry=False,
            on_connect_failed=handler.failures.append,
        ).connect()
    )
    server.wait(lambda: len(handler.failures) == 1, "the failed connect")
    (error,) = handler.failures
    assert isinstance(error, ssl.SSLCertVerificationError)
    expected = "expired" if which == "expired" else "match"
    assert expected in error.verify_message
    assert handler.connected == 0
    assert client.tls is not None
    assert client.tls.stats.peer_rejected == 1 and client.tls.stats.handshake_failures == 1
    client_lines = [
        r
        for r in tls_log_records(tls_caplog.records)
        if r.levelno >= logging.INFO and "with the server" in r.getMessage()
    ]
    assert len(client_lines) == 1 and client_lines[0].levelno == logging.WARNING
    server.wait(lambda: server.stats.handshake_failures == 1, "the server to see the alert")
    loop_thread.call(client.close)


def test_a_server_that_never_answers_times_the_client_out(
    loop_thread: LoopThread, pki: Pki, tls_caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket() as silent:  # accepts (the backlog) and never speaks
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        handler = Failures()
        client = loop_thread.call(
            lambda: TcpClient(
                loop_thread.loop,
                silent.getsockname(),
                handler,
                ssl=client_context(pki.ca_file),
                server_hostname="localhost",
                retry=False,
                ssl_handshake_timeout=0.3,
                on_connect_failed=handler.failures.append,
            ).connect()
        )
        assert loop_thread.wait_until(lambda: len(handler.failures) == 1, LIVENESS)
        assert isinstance(handler.failures[0], TimeoutError)
        assert client.tls is not None and client.tls.stats.handshake_timeouts == 1
        loop_thread.call(client.close)
    one_line(tls_caplog, logging.INFO, "no TLS handshake within")


class PausesEachTime(EchoHandler):
    """Pauses reading at each delivery and resumes 2 ms later: records (and the FIN)
    arrive meanwhile and wait, in the socket or (io_uring) in the session's BIO."""

    def __init__(self) -> None:
        self.data = bytearray()

    def on_read(self, conn: TcpConnection, data: memoryview) -> int:
        self.data += data
        conn.pause_reading()
        conn.loop.call_later(0.002, conn.resume_reading)
        return len(data)


def test_a_fin_after_records_that_waited_while_paused_is_no_truncation(
    loop_thread: LoopThread, pki: Pki, tls_caplog: pytest.LogCaptureFixture
) -> None:
    handler = PausesEachTime()
    tcp = loop_thread.call(
        lambda: TcpServer(
            loop_thread.loop, ("127.0.0.1", 0), handler, ssl=pki.server_context()
        ).start()
    )
    address = ("127.0.0.1", loop_thread.call(lambda: tcp.port))
    pieces = [bytes([i % 251]) * (1000 + 37 * i) for i in range(300)]
    client = MemoryTlsClient(address, pki.client_context())
    try:
        for piece in pieces:
            client.sock.sendall(client.record(piece))  # one record each, many reads
        client.sock.shutdown(socket.SHUT_WR)  # whole records, then a bare FIN
        closed_by_server(client.sock)
    finally:
        client.close()
    assert loop_thread.wait_until(lambda: tcp.connection_count == 0, LIVENESS)
    assert bytes(handler.data) == b"".join(pieces)
    assert tcp.tls is not None
    assert tcp.tls.stats.no_close_notify == 1 and tcp.tls.stats.truncated == 0
