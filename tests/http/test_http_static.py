"""Static files: zero-copy bodies, ranges, HEAD, and no way out of the directory."""

from __future__ import annotations

import http.client
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from http_support import live_server

from ioreactor.http.echo_app import build_echo_app
from ioreactor.http.server import HttpServer
from ioreactor.http.static import parse_range
from ioreactor.testing import LoopThread, open_fds
from support.http import parse_responses, raw_exchange, status_of

BIG = 3 * 1024 * 1024 + 17


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "www"
    (root / "sub").mkdir(parents=True)
    (root / "a.txt").write_bytes(b"static hello\n")
    (root / "sub" / "b.html").write_bytes(b"<p>b</p>")
    (root / "big.bin").write_bytes(os.urandom(BIG))
    (root / "empty").write_bytes(b"")
    (tmp_path / "secret.txt").write_bytes(b"TOP SECRET")
    os.symlink(tmp_path / "secret.txt", root / "escape.txt")
    os.symlink(tmp_path, root / "escape-dir")
    os.symlink(root / "a.txt", root / "inside.txt")
    return root


@pytest.fixture
def server(tree: Path, poller_name: str) -> Iterator[HttpServer]:
    with live_server(build_echo_app(tree), poller=poller_name) as (_, srv):
        yield srv


def get(port: int, path: str, headers: dict[str, str] | None = None, method: str = "GET"):  # type: ignore[no-untyped-def]
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(method, path, headers=headers or {})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def test_whole_files(server: HttpServer, tree: Path) -> None:
    status, headers, body = get(server.port, "/static/a.txt")
    assert (status, body) == (200, b"static hello\n")
    assert headers["Content-Type"] == "text/plain"
    assert headers["Accept-Ranges"] == "bytes"
    assert "Last-Modified" in headers
    status, headers, body = get(server.port, "/static/big.bin")
    assert status == 200
    assert body == (tree / "big.bin").read_bytes()
    status, _, body = get(server.port, "/static/sub/b.html")
    assert (status, body) == (200, b"<p>b</p>")
    assert get(server.port, "/static/empty")[::2] == (200, b"")
    assert get(server.port, "/static/inside.txt")[2] == b"static hello\n"


def test_ranges(server: HttpServer, tree: Path) -> None:
    data = (tree / "big.bin").read_bytes()
    status, headers, body = get(server.port, "/static/big.bin", {"Range": "bytes=0-99"})
    assert (status, body, headers["Content-Range"]) == (206, data[:100], f"bytes 0-99/{BIG}")
    status, _, body = get(server.port, "/static/big.bin", {"Range": "bytes=1000000-"})
    assert (status, body) == (206, data[1000000:])
    status, _, body = get(server.port, "/static/big.bin", {"Range": "bytes=-10"})
    assert (status, body) == (206, data[-10:])
    status, headers, body = get(server.port, "/static/a.txt", {"Range": f"bytes={BIG}-"})
    assert (status, headers["Content-Range"]) == (416, "bytes */13")
    status, _, body = get(server.port, "/static/a.txt", {"Range": "bytes=5-2"})
    assert (status, body) == (200, b"static hello\n")  # invalid: ignored
    status, _, body = get(server.port, "/static/a.txt", {"Range": "bytes=0-1,3-4"})
    assert (status, body) == (200, b"static hello\n")  # several ranges: whole file


def test_head_has_length_and_no_body(server: HttpServer) -> None:
    status, headers, body = get(server.port, "/static/big.bin", method="HEAD")
    assert (status, body, headers["Content-Length"]) == (200, b"", str(BIG))
    data, _ = raw_exchange(
        server.port, b"HEAD /static/a.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    )
    assert data.endswith(b"\r\n\r\n")


@pytest.mark.parametrize(
    "target",
    [
        b"/static/../secret.txt",
        b"/static/%2e%2e/secret.txt",
        b"/static/..%2fsecret.txt",
        b"/static/sub/../../secret.txt",
        b"/static//etc/passwd",
        b"/static/%2fetc%2fpasswd",
        b"/static/escape.txt",
        b"/static/escape-dir/secret.txt",
        b"/static/a.txt%00.png",
        b"/static/sub",
        b"/static/",
        b"/static/missing",
    ],
)
def test_no_path_leaves_the_directory(server: HttpServer, target: bytes) -> None:
    data, _ = raw_exchange(
        server.port, b"GET " + target + b" HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    )
    assert status_of(data) == 404
    assert b"SECRET" not in data
    assert b"root:" not in data


def test_pipelined_files_and_text_stay_in_order(server: HttpServer, tree: Path) -> None:
    data, _ = raw_exchange(
        server.port,
        b"GET /static/big.bin HTTP/1.1\r\nHost: t\r\n\r\n"
        b"GET / HTTP/1.1\r\nHost: t\r\n\r\n"
        b"GET /static/a.txt HTTP/1.1\r\nHost: t\r\nRange: bytes=7-11\r\n\r\n"
        b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    )
    responses = parse_responses(data)
    assert [r.status for r in responses] == [200, 200, 206, 200]
    assert responses[0].body == (tree / "big.bin").read_bytes()
    assert responses[1].body == b"Hello, World!"
    assert responses[2].body == b"hello"


def test_curl_fetches_files_and_ranges(server: HttpServer, tree: Path) -> None:
    base = f"http://127.0.0.1:{server.port}"
    out = subprocess.run(
        ["curl", "-sS", "--max-time", "30", f"{base}/static/big.bin"],
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout
    assert out == (tree / "big.bin").read_bytes()
    out = subprocess.run(
        ["curl", "-sS", "--max-time", "30", "-r", "2-5", f"{base}/static/a.txt"],
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout
    assert out == b"atic"
    code = subprocess.run(
        [
            "curl",
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--path-as-is",
            f"{base}/static/../secret.txt",
        ],
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout
    assert code == b"404"


def test_no_fd_leaks_when_clients_abort_file_transfers(tree: Path) -> None:
    import socket

    with LoopThread() as lt:
        srv = HttpServer(lt.loop, ("127.0.0.1", 0), build_echo_app(tree))
        lt.call(srv.start)
        fds_before = lt.call(open_fds)
        for _ in range(5):
            sock = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
            sock.sendall(b"GET /static/big.bin HTTP/1.1\r\nHost: t\r\n\r\n")
            sock.recv(1000)
            sock.close()  # mid-transfer
        assert lt.wait_until(lambda: not srv.tcp.connections, timeout=30)
        assert lt.call(open_fds) == fds_before
        lt.call(srv.close)


def test_parse_range_unit() -> None:
    assert parse_range("bytes=0-0", 10) == (0, 0)
    assert parse_range("bytes=5-100", 10) == (5, 9)
    assert parse_range("bytes=-3", 10) == (7, 9)
    assert parse_range("bytes=-30", 10) == (0, 9)
    assert parse_range("bytes=-0", 10) is False
    assert parse_range("bytes=10-", 10) is False
    assert parse_range("bytes=0-", 0) is False
    assert parse_range("items=0-1", 10) is None
    assert parse_range("bytes=a-b", 10) is None
    assert parse_range("bytes=3-1", 10) is None
    assert parse_range(" BYTES = 1 - 2 ", 10) == (1, 2)
    # Positions longer than any file offset are ignored (whole file), not a 500 from
    # int()'s 4,300-digit limit.
    assert parse_range("bytes=" + "1" * 5000 + "-", 10) is None
    assert parse_range("bytes=0-" + "9" * 20, 10) is None
    assert parse_range("bytes=-" + "9" * 5000, 10) is None


def test_if_range_with_another_version_gets_the_whole_file(server: HttpServer, tree: Path) -> None:
    """RFC 9110 13.1.5: a Range under an If-Range that does not match the file's
    Last-Modified (or names an entity tag, which we never send) is ignored."""
    _, headers, _ = get(server.port, "/static/a.txt")
    current = headers["Last-Modified"]
    stale = "Sun, 09 Sep 2001 01:46:40 GMT"
    status, _, body = get(server.port, "/static/a.txt", {"Range": "bytes=7-", "If-Range": current})
    assert (status, body) == (206, b"hello\n")
    for other in (stale, '"some-etag"'):
        status, _, body = get(
            server.port, "/static/a.txt", {"Range": "bytes=7-", "If-Range": other}
        )
        assert (status, body) == (200, b"static hello\n")
