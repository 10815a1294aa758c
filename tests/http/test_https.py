"""HTTPS: the unchanged HTTP handler over TLS connections, with real clients -- curl
(``--cacert``, mutual TLS with ``--cert``), httpx, Python's ``http.client`` -- and
``ioreactor serve --certfile ...`` as real processes: one or several workers (each loads
the certificate itself: a restarted worker serves renewed files), SNI, a plain HTTP
request to the HTTPS port answered with a 400 in plaintext, flags refused in one line.
"""

from __future__ import annotations

import http.client
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from ioreactor.http.echo_app import build_echo_app
from ioreactor.http.handler import HttpHandler
from ioreactor.http.https import HTTPS_ALPN, PLAIN_HTTP_REPLY
from ioreactor.net.server import TcpServer
from ioreactor.net.tls_context import server_context
from ioreactor.testing import LoopThread, free_port
from support.cli_process import run_cli
from support.programs import require_program
from support.tls import Pki, Served, shared_pki, tls_connect

TIMEOUT = 20.0


@pytest.fixture
def pki() -> Pki:
    return shared_pki()


def curl(*args: str) -> subprocess.CompletedProcess[str]:
    """curl with ``args``; the test is skipped (saying why) without curl."""
    program = require_program("curl", "curl (Debian: apt-get install curl)")
    return subprocess.run(
        [program, "-sS", "--max-time", "20", *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@contextmanager
def https_server(lt: LoopThread, pki: Pki, **context_options: object) -> Iterator[int]:
    """The echo application over TLS on the loop thread, as ``ioreactor serve`` runs it;
    yields its port."""
    context = server_context(
        pki.server.cert,
        pki.server.key,
        alpn=HTTPS_ALPN,
        **context_options,  # type: ignore[arg-type]
    )
    handler = HttpHandler(build_echo_app())
    server = lt.call(
        lambda: TcpServer(
            lt.loop,
            ("127.0.0.1", 0),
            handler,
            ssl=context,
            ssl_plaintext_reply=PLAIN_HTTP_REPLY,
        ).start()
    )
    _servers[lt] = server
    try:
        yield lt.call(lambda: server.port)
    finally:
        del _servers[lt]
        lt.call(server.close)
        lt.call(handler.close)


def handshake_count(lt: LoopThread) -> int:
    """Handshakes so far of the HTTPS server on ``lt`` (its only server)."""
    return _servers[lt].tls.stats.handshakes  # type: ignore[union-attr]


_servers: dict[LoopThread, TcpServer] = {}


# -- in-process server, every backend -------------------------------------------------------


def test_curl_gets_and_posts_over_https(loop_thread: LoopThread, pki: Pki, tmp_path: Path) -> None:
    body = os.urandom(300_000).hex()
    (tmp_path / "body").write_text(body)
    with https_server(loop_thread, pki) as port:
        url = f"https://localhost:{port}"
        hello = curl("--cacert", pki.ca_file, "-v", f"{url}/")
        assert hello.returncode == 0, hello.stderr
        assert hello.stdout == "Hello, World!"
        assert "ALPN: server accepted http/1.1" in hello.stderr
        echo = curl(
            "--cacert", pki.ca_file, "--data-binary", f"@{tmp_path / 'body'}", f"{url}/echo"
        )
        assert echo.stdout == body


def test_httpx_keeps_one_connection_alive(loop_thread: LoopThread, pki: Pki) -> None:
    with (
        https_server(loop_thread, pki) as port,
        httpx.Client(verify=pki.client_context(), timeout=TIMEOUT) as client,
    ):
        url = f"https://localhost:{port}"
        for i in range(30):
            reply = client.post(f"{url}/echo", content=b"request %d" % i)
            assert reply.status_code == 200 and reply.content == b"request %d" % i
        assert client.get(f"{url}/").text == "Hello, World!"
        big = os.urandom(512 << 10)
        assert client.put(f"{url}/echo", content=big).content == big
        assert handshake_count(loop_thread) == 1  # 32 requests, one connection


def test_pipelined_requests_over_tls_answered_in_order(loop_thread: LoopThread, pki: Pki) -> None:
    with https_server(loop_thread, pki) as port:
        requests = b"".join(
            b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\n%03d" % i
            for i in range(16)
        )
        with tls_connect(("127.0.0.1", port), pki.client_context()) as sock:
            sock.sendall(requests)  # one write: 16 requests in one record
            data = b""
            while data.count(b"HTTP/1.1 200") < 16 or not data.endswith(b"015"):
                chunk = sock.recv(65536)
                assert chunk
                data += chunk
        bodies = [part[-3:] for part in data.split(b"HTTP/1.1 200 OK")[1:]]
        assert bodies == [b"%03d" % i for i in range(16)]


def test_http_client_of_the_standard_library(loop_thread: LoopThread, pki: Pki) -> None:
    with https_server(loop_thread, pki) as port:
        conn = http.client.HTTPSConnection(
            "localhost", port, context=pki.client_context(), timeout=TIMEOUT
        )
        try:
            for _ in range(3):
                conn.request("GET", "/echo", headers={"X-Probe": "1"})
                reply = conn.getresponse()
                assert reply.status == 200
                assert b"x-probe: 1" in reply.read().lower()
        finally:
            conn.close()


def test_plain_http_to_the_https_port_gets_a_400_in_plaintext(
    loop_thread: LoopThread, pki: Pki
) -> None:
    with https_server(loop_thread, pki) as port:
        reply = curl("-i", f"http://127.0.0.1:{port}/")
        assert reply.returncode == 0, reply.stderr
        assert reply.stdout.startswith("HTTP/1.1 400 Bad Request")
        assert "plain HTTP request was sent to an HTTPS port" in reply.stdout
        # and the port still speaks HTTPS
        hello = curl("--cacert", pki.ca_file, f"https://localhost:{port}/")
        assert hello.stdout == "Hello, World!"


def test_mutual_tls_with_curl(loop_thread: LoopThread, pki: Pki) -> None:
    with https_server(loop_thread, pki, ca_certs=pki.ca_file, client_cert="required") as port:
        url = f"https://localhost:{port}/"
        member = curl("--cacert", pki.ca_file, "--cert", pki.client.both, url)
        assert member.stdout == "Hello, World!", member.stderr
        stranger = curl("--cacert", pki.ca_file, "--cert", pki.stranger.both, url)
        assert stranger.returncode != 0
        nobody = curl("--cacert", pki.ca_file, url)
        assert nobody.returncode != 0


# -- ioreactor serve, real processes --------------------------------------------------------


def serve_args(port: int, pki: Pki, *extra: str) -> list[str]:
    return [
        "serve",
        "--listen",
        f"127.0.0.1:{port}",
        "--certfile",
        pki.server.cert,
        "--keyfile",
        pki.server.key,
        *extra,
    ]


@pytest.mark.parametrize("workers", [["--workers", "0"], ["--workers", "2"]])
def test_ioreactor_serve_over_https(pki: Pki, tmp_path: Path, workers: list[str]) -> None:
    port = free_port()
    with Served(serve_args(port, pki, *workers), port, tmp_path / "serve.log") as served:
        for _ in range(6):  # new connections: both workers get some
            reply = curl("--cacert", pki.ca_file, f"https://localhost:{port}/")
            assert reply.stdout == "Hello, World!", reply.stderr
        plain = curl(f"http://127.0.0.1:{port}/")
        assert "plain HTTP request was sent to an HTTPS port" in plain.stdout
    assert f"https://127.0.0.1:{port}" in served.log()


def test_each_worker_loads_the_certificate_itself(pki: Pki, tmp_path: Path) -> None:
    """A worker restarted after the files were renewed serves the new certificate: the
    supervisor's own (checked) copy is never what a worker serves."""
    cert, key = tmp_path / "live.crt", tmp_path / "live.key"
    shutil.copy(pki.server.cert, cert)
    shutil.copy(pki.server.key, key)
    port = free_port()
    args = [
        "serve",
        "--listen",
        f"127.0.0.1:{port}",
        "--workers",
        "1",
        "--certfile",
        str(cert),
        "--keyfile",
        str(key),
    ]
    with Served(args, port, tmp_path / "serve.log") as served:
        assert "localhost" in peer_names(port, pki)
        renewed = pki.ca.issue_cert("localhost", "127.0.0.1", common_name="renewed")
        cert.write_bytes(b"".join(blob.bytes() for blob in renewed.cert_chain_pems))
        key.write_bytes(renewed.private_key_pem.bytes())
        (worker,) = served.children()
        os.kill(worker, signal.SIGKILL)
        deadline = time.monotonic() + TIMEOUT
        while served.children() in ([], [worker]):
            assert time.monotonic() < deadline, "the worker was not restarted"
            time.sleep(0.05)
        names: set[str] = set()
        while "renewed" not in names:
            assert time.monotonic() < deadline, f"still serving {names}"
            try:
                names = peer_names(port, pki)
            except OSError:
                time.sleep(0.05)


def peer_names(port: int, pki: Pki) -> set[str]:
    """The subject names of the certificate the server at ``port`` presents."""
    with tls_connect(("127.0.0.1", port), pki.client_context()) as sock:
        cert = sock.getpeercert()
    assert cert is not None
    names = {value for rdn in cert.get("subject", ()) for _, value in rdn}
    names |= {value for _, value in cert.get("subjectAltName", ())}
    return {str(n) for n in names}


def test_ioreactor_serve_with_mutual_tls_and_sni(pki: Pki, tmp_path: Path) -> None:
    port = free_port()
    a = pki.sni["a.ioreactor.test"]
    extra = [
        "--workers",
        "0",
        "--ca-certs",
        pki.ca_file,
        "--client-cert",
        "required",
        "--sni",
        f"a.ioreactor.test={a.cert},{a.key}",
    ]
    with Served(serve_args(port, pki, *extra), port, tmp_path / "serve.log"):
        common = ["--cacert", pki.ca_file, "--cert", pki.client.both]
        plain = curl(*common, f"https://localhost:{port}/")
        assert plain.stdout == "Hello, World!", plain.stderr
        by_name = curl(
            *common,
            "--resolve",
            f"a.ioreactor.test:{port}:127.0.0.1",
            f"https://a.ioreactor.test:{port}/",
        )
        assert by_name.stdout == "Hello, World!", by_name.stderr
        refused = curl("--cacert", pki.ca_file, f"https://localhost:{port}/")
        assert refused.returncode != 0


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--keyfile", "{key}"], "--keyfile need(s) --certfile"),
        (["--certfile", "{cert}", "--keyfile", "{other}"], "key values mismatch"),
        (["--certfile", "{cert}", "--client-cert", "required"], "--client-cert needs --ca-certs"),
        (["--certfile", "/nonexistent/cert.pem"], "does not exist"),
        (["--certfile", "{cert}", "--sni", "nameonly"], "NAME=CERT"),
        (["--certfile", "{cert}", "--handshake-timeout", "0"], "must be > 0"),
    ],
)
def test_bad_tls_flags_are_one_line_and_exit_2(pki: Pki, flags: list[str], message: str) -> None:
    files = {"cert": pki.server.cert, "key": pki.server.key, "other": pki.client.key}
    argv = [f.format(**files) for f in flags]
    result = run_cli("serve", "--workers", "0", *argv, timeout=60)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]  # (argparse's usage may come first)
    assert "error:" in last and message in last


def test_plain_socket_sees_tls_alert_not_silence_for_a_bad_hello(pki: Pki) -> None:
    """A hello the server cannot accept (TLS 1.1 only) gets an alert, then the close."""
    with LoopThread() as lt, https_server(lt, pki) as port:
        old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        old.check_hostname = False
        old.verify_mode = ssl.CERT_NONE
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # TLS 1.1: that is the point
            old.minimum_version = old.maximum_version = ssl.TLSVersion.TLSv1_1
        raw = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        with pytest.raises(ssl.SSLError), old.wrap_socket(raw):
            pass
        with tls_connect(("127.0.0.1", port), pki.client_context()) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            data = b""
            while not data.endswith(b"Hello, World!"):
                chunk = sock.recv(1000)
                assert chunk, data
                data += chunk
