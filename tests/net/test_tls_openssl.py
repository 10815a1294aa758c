"""The TLS layer against OpenSSL's own client (``openssl s_client``): session resumption
with ``-sess_out``/``-sess_in``, ALPN, SNI, a KeyUpdate (a read that produces output),
and renegotiation, which is refused. Needs the ``openssl`` command line tool.

The server runs on a ``LoopThread``, once per backend.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ioreactor.echo import EchoHandler
from ioreactor.net.buffer import Buffer
from ioreactor.net.connection import TcpConnection
from ioreactor.net.server import TcpServer
from ioreactor.net.tls_context import SniCertificate, TlsFiles
from ioreactor.testing import LoopThread, recv_exactly
from support.tls import Pki, run_openssl_client, shared_pki, tls_connect


@pytest.fixture
def pki() -> Pki:
    return shared_pki()


class EchoThenClose(EchoHandler):
    """Echoes the first read, then closes (close_notify): s_client exits by itself."""

    def on_message(self, conn: TcpConnection, buffer: Buffer) -> None:
        conn.send(buffer.read_all())
        conn.close()


def start(lt: LoopThread, files: TlsFiles, handler: EchoHandler | None = None) -> TcpServer:
    handler = handler or EchoHandler()
    return lt.call(
        lambda: TcpServer(lt.loop, ("127.0.0.1", 0), handler, ssl=files.server_context).start()
    )


def files_of(pki: Pki, **options: object) -> TlsFiles:
    return TlsFiles(pki.server.cert, pki.server.key, **options)  # type: ignore[arg-type]


def test_session_resumption_with_sess_out_and_sess_in(
    loop_thread: LoopThread, pki: Pki, tmp_path: Path
) -> None:
    server = start(loop_thread, files_of(pki), EchoThenClose())
    port: int = loop_thread.call(lambda: server.port)
    session = str(tmp_path / "session.pem")
    trust = ("-CAfile", pki.ca_file, "-ign_eof")
    first = run_openssl_client(port, *trust, "-sess_out", session, lines=[b"one\n"])
    assert "New, TLSv1.3" in first and "\none\n" in first
    second = run_openssl_client(port, *trust, "-sess_in", session, lines=[b"two\n"])
    assert "Reused, TLSv1.3" in second and "\ntwo\n" in second
    assert server.tls is not None
    assert loop_thread.wait_until(lambda: server.tls is not None and server.tls.stats.resumed == 1)
    assert server.tls.stats.handshakes == 2


def test_alpn_is_negotiated_and_exposed(loop_thread: LoopThread, pki: Pki) -> None:
    server = start(loop_thread, files_of(pki, alpn=("http/1.1",)), EchoThenClose())
    port: int = loop_thread.call(lambda: server.port)
    output = run_openssl_client(
        port, "-CAfile", pki.ca_file, "-alpn", "h2,http/1.1", "-ign_eof", lines=[b"x\n"]
    )
    assert "ALPN protocol: http/1.1" in output
    refused = run_openssl_client(
        port, "-CAfile", pki.ca_file, "-alpn", "h2", "-ign_eof", lines=[b"x\n"]
    )
    assert "No ALPN negotiated" in refused or "no application protocol" in refused


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("a.ioreactor.test", "a.ioreactor.test"),
        ("b.ioreactor.test", "b.ioreactor.test"),
        ("x.wild.ioreactor.test", "*.wild.ioreactor.test"),
        ("unknown.test", None),  # the default certificate
    ],
)
def test_sni_picks_the_certificate_by_name(
    loop_thread: LoopThread, pki: Pki, name: str, expected: str | None
) -> None:
    sni = tuple(SniCertificate(n, f.cert, f.key) for n, f in pki.sni.items())
    server = start(loop_thread, files_of(pki, sni=sni), EchoThenClose())
    port: int = loop_thread.call(lambda: server.port)
    output = run_openssl_client(
        port, "-CAfile", pki.ca_file, "-servername", name, "-ign_eof", lines=[b"x\n"]
    )
    subject = next(line for line in output.splitlines() if line.startswith("subject="))
    # "subject=O = trustme, OU = Testing server cert #<random>, CN = a.ioreactor.test":
    # compare attributes, not substrings (the random part may itself contain "CN").
    attributes = dict(part.split(" = ", 1) for part in subject.removeprefix("subject=").split(", "))
    assert attributes.get("CN") == expected  # None: the default certificate has no common name


def test_a_key_update_is_answered(loop_thread: LoopThread, pki: Pki) -> None:
    server = start(loop_thread, files_of(pki))
    port: int = loop_thread.call(lambda: server.port)
    # "K": a KeyUpdate that asks the server to update its keys too.
    output = run_openssl_client(
        port, "-CAfile", pki.ca_file, "-msg", lines=[b"before\n", b"K\n", b"after\n"]
    )
    assert ">>> TLS 1.3, Handshake [length 0005], KeyUpdate" in output  # ours, sent
    assert "<<< TLS 1.3, Handshake [length 0005], KeyUpdate" in output  # the server's answer
    assert "\nbefore\n" in output and "\nafter\n" in output  # echoed under the new keys


def test_renegotiation_is_refused(loop_thread: LoopThread, pki: Pki) -> None:
    server = start(loop_thread, files_of(pki))
    port: int = loop_thread.call(lambda: server.port)
    output = run_openssl_client(
        port, "-CAfile", pki.ca_file, "-tls1_2", lines=[b"hello\n", b"R\n", b"again\n"]
    )
    assert "RENEGOTIATING" in output
    assert "no renegotiation" in output  # the server's alert
    assert "\nagain\n" not in output
    assert server.tls is not None
    assert server.tls.stats.handshakes == 1  # never a second handshake
    with tls_connect(("127.0.0.1", port), pki.client_context()) as sock:
        sock.sendall(b"others unaffected")
        assert recv_exactly(sock, 17) == b"others unaffected"
