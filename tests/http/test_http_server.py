"""The server with real clients (http.client, curl) and the ``ioreactor serve`` process:
keep-alive reuse, graceful shutdown on SIGTERM, the access log."""

from __future__ import annotations

import http.client
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest
from http_support import live_server

from ioreactor.http.app import App
from ioreactor.http.request import Request
from ioreactor.http.server import HttpServer
from support.cli_process import run_cli
from support.http import raw_exchange, status_of
from support.server_process import wait_accepting


def test_http_client_reuses_one_connection(poller_name: str) -> None:
    with live_server(poller=poller_name) as (lt, server):
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        try:
            for i in range(20):
                conn.request("POST", "/echo", body=b"x" * i, headers={"Content-Type": "a/b"})
                response = conn.getresponse()
                assert (response.status, response.read()) == (200, b"x" * i)
                assert response.getheader("Content-Type") == "a/b"
            conn.request("GET", "/")
            assert conn.getresponse().read() == b"Hello, World!"
            assert lt.call(lambda: len(server.tcp.connections)) == 1
        finally:
            conn.close()


def test_http_client_chunked_upload() -> None:
    with live_server() as (_, server):
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        try:
            conn.request("PUT", "/echo", body=iter([b"ab", b"cd", b"e"]), encode_chunked=True)
            assert conn.getresponse().read() == b"abcde"
        finally:
            conn.close()


def curl(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        ["curl", "-sS", "--max-time", "20", *args], capture_output=True, timeout=60, check=True
    )


def test_curl() -> None:
    with live_server() as (_, server):
        base = f"http://127.0.0.1:{server.port}"
        assert curl(f"{base}/").stdout == b"Hello, World!"
        out = curl("-H", "Content-Type: text/csv", "--data-binary", "a,b\n1,2", f"{base}/echo")
        assert out.stdout == b"a,b\n1,2"
        head = curl("-i", f"{base}/echo").stdout.decode()
        assert head.startswith("HTTP/1.1 200 OK\r\n")
        assert "\r\n\r\nGET /echo HTTP/1.1\nHost: 127.0.0.1:" in head
        assert curl("-o", "/dev/null", "-w", "%{http_code}", f"{base}/x").stdout == b"404"
        # curl's own Expect: 100-continue kicks in for bodies over 1 MiB; use a header
        big = b"z" * 200_000
        out = subprocess.run(
            [
                "curl",
                "-sS",
                "--max-time",
                "20",
                "-H",
                "Expect: 100-continue",
                "--data-binary",
                "@-",
                f"{base}/echo",
            ],
            input=big,
            capture_output=True,
            timeout=60,
            check=True,
        )
        assert out.stdout == big
        # two URLs on one connection (keep-alive), HTTP/1.0 closes
        verbose = curl("-v", f"{base}/", f"{base}/healthz").stderr
        assert b"Re-using existing connection" in verbose or b"Reusing existing" in verbose
        assert curl("--http1.0", f"{base}/").stdout == b"Hello, World!"


def test_blocking_handlers_run_in_the_pool_concurrently() -> None:
    app = App()
    started = threading.Barrier(3, timeout=10)

    @app.route("/wait", blocking=True)
    def wait(request: Request) -> str:
        started.wait()  # three requests must be in the pool at once
        return threading.current_thread().name

    with live_server(app) as (_, server):
        results: list[bytes] = []

        def client() -> None:
            data, _ = raw_exchange(
                server.port, b"GET /wait HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
            )
            results.append(data)

        threads = [threading.Thread(target=client) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(20)
        assert len(results) == 3
        assert all(status_of(r) == 200 and b"pool" in r for r in results)


def test_graceful_shutdown_in_process() -> None:
    app = App()
    release = threading.Event()

    @app.route("/slow", blocking=True)
    def slow(request: Request) -> str:
        release.wait(10)
        return "finished"

    with live_server(app) as (lt, server):
        idle = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        busy = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        busy.sendall(b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n")
        assert lt.wait_until(lambda: len(server.tcp.connections) == 2)
        done = threading.Event()
        lt.call(server.shutdown, 10.0, done.set)
        assert idle.recv(100) == b""  # idle keep-alive: closed at once
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", server.port), timeout=2)
        release.set()
        data = b""
        while chunk := busy.recv(4096):
            data += chunk
        assert status_of(data) == 200 and data.endswith(b"finished")
        assert b"Connection: close" in data
        busy.close()  # else the server lingers (up to linger_timeout) for our FIN
        assert done.wait(10)
        idle.close()


def test_access_log(caplog: pytest.LogCaptureFixture) -> None:
    with (
        caplog.at_level(logging.INFO, logger="ioreactor.http.access"),
        live_server(access_log=True) as (_, server),
    ):
        raw_exchange(server.port, b"GET /nope?q=1 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    lines = [r.getMessage() for r in caplog.records if r.name == "ioreactor.http.access"]
    assert any('"GET /nope?q=1 HTTP/1.1" 404' in line for line in lines)


@pytest.fixture
def serve_process() -> Iterator[tuple[subprocess.Popen[str], int]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "ioreactor", "serve", "--workers", "0", "--listen", "127.0.0.1:0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stdout is not None
        port = 0
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            match = re.search(r"http://127\.0\.0\.1:(\d+)", line)
            if match:
                port = int(match.group(1))
                break
        assert port, "the server did not report its address"
        yield proc, port
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)


def test_serve_answers_and_stops_gracefully_on_sigterm(
    serve_process: tuple[subprocess.Popen[str], int],
) -> None:
    proc, port = serve_process
    data, closed = raw_exchange(port, b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    assert data.endswith(b"Hello, World!") and closed
    keepalive = socket.create_connection(("127.0.0.1", port), timeout=10)
    keepalive.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
    assert status_of(keepalive.recv(4096)) == 200
    proc.send_signal(signal.SIGTERM)
    assert keepalive.recv(100) == b""  # the idle keep-alive connection is closed
    assert proc.wait(20) == 0
    keepalive.close()


def test_serve_refuses_a_missing_static_directory() -> None:
    out = run_cli(
        "serve",
        "--static",
        "/nonexistent/dir",
        "--workers",
        "0",
        "--listen",
        "127.0.0.1:0",
        timeout=60,
    )
    assert out.returncode == 2 and "directory '/nonexistent/dir' does not exist" in out.stderr


def test_server_port_zero_and_close() -> None:
    with live_server() as (lt, server):
        assert isinstance(server, HttpServer) and server.port > 0
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        assert lt.wait_until(lambda: len(server.tcp.connections) == 1)
        lt.call(server.close)
        assert sock.recv(10) == b""
        sock.close()


@pytest.mark.parametrize("mode", [["--workers", "2"], ["--workers", "0", "--loops", "2"]])
def test_serve_on_several_cores(mode: list[str]) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "ioreactor", "serve", "--listen", f"127.0.0.1:{port}", *mode],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_accepting(port, proc)
        conns = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(8)]
        for sock in conns:
            sock.sendall(
                b"GET / HTTP/1.1\r\nHost: t\r\n\r\nGET /healthz HTTP/1.1\r\nHost: t\r\n\r\n"
            )
        for sock in conns:
            data = b""
            while data.count(b"HTTP/1.1 200") < 2:
                data += sock.recv(4096)
            assert data.count(b"HTTP/1.1 200 OK") == 2
        proc.send_signal(signal.SIGTERM)
        for sock in conns:
            assert sock.recv(100) == b""  # idle keep-alive connections are closed
            sock.close()
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
