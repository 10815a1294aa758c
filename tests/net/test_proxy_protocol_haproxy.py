"""ProxyProtocolHandler behind a real HAProxy (Debian's ``haproxy``): ``send-proxy``,
``send-proxy-v2`` with its CRC32C and unique-id TLVs, a TLS frontend whose ALPN, SNI and
SSL details arrive as TLVs, and health checks arriving as LOCAL headers.

Clients connect from 127.0.0.2 and up; HAProxy reaches the backend from 127.0.0.1, the
one trusted proxy address; the application must see each client's own address.
"""

from __future__ import annotations

import json
import socket
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trustme

from ioreactor.net.buffer import Buffer
from ioreactor.net.connection import TcpConnection
from ioreactor.net.handlers import Handler
from ioreactor.net.proxy_protocol import (
    PP2_TYPE_CRC32C,
    ProxyProtocolHandler,
    ProxyTrust,
)
from ioreactor.net.server import TcpServer
from ioreactor.testing import LoopThread
from support.haproxy import HAProxy, haproxy_program

TIMEOUT = 20.0
SNI = "proxy.example"


class Report(Handler):
    """Answers each line with what the application knows of the connection, as JSON."""

    def __init__(self) -> None:
        self.front: ProxyProtocolHandler | None = None

    def on_message(self, conn: TcpConnection, buffer: Buffer) -> None:
        assert self.front is not None
        while (end := buffer.find_eol()) >= 0:
            buffer.retrieve(end + 1)
            header = self.front.header(conn)
            assert header is not None
            ssl_info = header.ssl
            report = {
                "peer": conn.peer,
                "proxy_peer": self.front.proxy_peer(conn),
                "version": header.version,
                "destination": header.destination,
                "crc32c": header.tlv(PP2_TYPE_CRC32C) is not None,
                "unique_id": header.unique_id.decode() if header.unique_id else None,
                "alpn": header.alpn.decode() if header.alpn else None,
                "authority": header.authority,
                "tls": ssl_info.tls if ssl_info else None,
                "tls_version": ssl_info.version if ssl_info else None,
                "cipher": ssl_info.cipher if ssl_info else None,
            }
            conn.send(json.dumps(report).encode() + b"\n")


@dataclass
class Site:
    """HAProxy in front of one ioreactor backend, a frontend port per flavour."""

    front: ProxyProtocolHandler
    ports: dict[str, int]
    ca: trustme.CA


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in socks]
    finally:
        for sock in socks:
            sock.close()


CONFIG = """
global
    maxconn 200
defaults
    mode tcp
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend v1
    bind 127.0.0.1:{v1}
    default_backend v1
backend v1
    server app 127.0.0.1:{backend} send-proxy
frontend v2
    bind 127.0.0.1:{v2}
    unique-id-format req-%ci-%cp
    default_backend v2
backend v2
    server app 127.0.0.1:{backend} send-proxy-v2 proxy-v2-options crc32c,unique-id check inter 100ms
frontend tls
    bind 127.0.0.1:{tls} ssl crt {pem} alpn h2,http/1.1
    default_backend tls
backend tls
    server app 127.0.0.1:{backend} send-proxy-v2 proxy-v2-options ssl,authority,ssl-cipher,crc32c
"""


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    haproxy_program()  # skip first, saying what is missing
    workdir: Path = tmp_path_factory.mktemp("haproxy")
    ca = trustme.CA()
    pem = workdir / "site.pem"
    ca.issue_cert(SNI).private_key_and_cert_chain_pem.write_to_path(str(pem))
    inner = Report()
    front = ProxyProtocolHandler(inner, ProxyTrust(["127.0.0.1"]))
    inner.front = front
    with LoopThread(name="haproxy-backend") as lt:
        server = lt.call(lambda: TcpServer(lt.loop, "127.0.0.1:0", front).start())
        ports = dict(zip(("v1", "v2", "tls"), free_ports(3), strict=True))
        config = CONFIG.format(backend=server.port, pem=pem, **ports)
        try:
            with HAProxy(config, workdir, list(ports.values())):
                yield Site(front, ports, ca)
        finally:
            lt.call(server.close)


def client_from(host: str, port: int) -> socket.socket:
    sock = socket.socket()
    sock.settimeout(TIMEOUT)
    sock.bind((host, 0))
    sock.connect(("127.0.0.1", port))
    return sock


def ask(sock: socket.socket) -> dict[str, Any]:
    sock.sendall(b"who\n")
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(4096)
        assert chunk, f"the backend closed; got {data!r}"
        data += chunk
    report: dict[str, Any] = json.loads(data)
    return report


def test_send_proxy_v1_gives_the_client_address(site: Site) -> None:
    with client_from("127.0.0.2", site.ports["v1"]) as sock:
        report = ask(sock)
        assert report["peer"] == list(sock.getsockname())
    assert report["peer"][0] == "127.0.0.2"
    assert report["proxy_peer"][0] == "127.0.0.1"  # HAProxy's own connection
    assert report["version"] == 1
    assert report["destination"] == ["127.0.0.1", site.ports["v1"]]
    assert site.front.stats.malformed == 0


def test_send_proxy_v2_with_crc32c_and_unique_id(site: Site) -> None:
    """HAProxy's CRC32C passes our check; its unique id names the client."""
    with client_from("127.0.0.3", site.ports["v2"]) as sock:
        report = ask(sock)
        host, port = sock.getsockname()
    assert report["peer"] == [host, port] and host == "127.0.0.3"
    assert report["version"] == 2 and report["crc32c"]
    assert report["unique_id"] == f"req-{host}-{port}"
    assert site.front.stats.malformed == 0


def test_tls_frontend_details_arrive_as_tlvs(site: Site) -> None:
    context = ssl.create_default_context()
    site.ca.configure_trust(context)
    context.set_alpn_protocols(["http/1.1"])
    with (
        client_from("127.0.0.4", site.ports["tls"]) as raw,
        context.wrap_socket(raw, server_hostname=SNI) as sock,
    ):
        report = ask(sock)
        client = list(sock.getsockname())
        cipher = sock.cipher()
    assert report["peer"] == client
    assert report["alpn"] == "http/1.1" and report["authority"] == SNI
    assert report["tls"] is True and report["tls_version"].startswith("TLSv1.")
    assert cipher is not None and report["cipher"] == cipher[0]
    assert report["crc32c"]


def test_health_checks_arrive_as_local_headers(site: Site) -> None:
    """HAProxy's checks (every 100 ms) send LOCAL: valid, the real endpoints kept."""
    deadline = time.monotonic() + TIMEOUT
    while site.front.stats.local < 3:
        assert time.monotonic() < deadline, site.front.stats
        time.sleep(0.05)
    assert site.front.stats.malformed == 0 and site.front.stats.untrusted == 0


def test_many_clients_each_seen_with_its_own_address(site: Site) -> None:
    socks = [
        client_from(f"127.0.0.{10 + i}", site.ports["v1" if i % 2 else "v2"]) for i in range(20)
    ]
    try:
        for sock in socks:
            assert ask(sock)["peer"] == list(sock.getsockname())
    finally:
        for sock in socks:
            sock.close()
