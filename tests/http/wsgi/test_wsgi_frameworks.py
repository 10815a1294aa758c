"""Flask and Django served by a real ``ioreactor serve`` process, driven by curl, httpx
and wrk, and the differential test: the same requests to gunicorn (the reference WSGI
server, ``-k gthread``) give the same statuses, header fields and bodies.

Documented differences, left out of the comparison: ``Date`` and ``Server`` (each
server's own), and ``Connection`` handling -- gunicorn writes ``Connection: keep-alive``
on every HTTP/1.1 keep-alive response, ioreactor writes nothing there (keep-alive is
HTTP/1.1's default) and ``Connection: close`` when it closes, like the native server.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ioreactor.testing import free_port
from support.cli_process import CliProcess
from support.http import comparable
from support.processes import terminate
from support.server_process import wait_accepting

TESTS_DIR = str(Path(__file__).resolve().parents[2])
TIMEOUT = 30.0
#: Fields each server writes its own way (see the module docstring).
OWN_FIELDS = {"date", "server", "connection", "keep-alive"}


def ioreactor(tmp_path: Path, app: str, *extra: str) -> tuple[CliProcess, int]:
    server = CliProcess(
        tmp_path,
        "serve",
        f"support.wsgi_apps:{app}",
        "--app-dir",
        TESTS_DIR,
        "--listen",
        "127.0.0.1:0",
        "--workers",
        "0",
        *extra,
        name=f"ioreactor-{app}",
    )
    match = server.wait_for(r"on http://127\.0\.0\.1:(\d+) \(pid")
    return server, int(match.group(1))


class Gunicorn:
    """gunicorn serving ``support.wsgi_apps:APP``, one worker, gthread."""

    def __init__(self, tmp_path: Path, app: str, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.log = open(tmp_path / f"gunicorn-{app}.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "-k",
                "gthread",
                "--threads",
                "4",
                "-w",
                "1",
                "-b",
                f"127.0.0.1:{self.port}",
                "--chdir",
                TESTS_DIR,
                f"support.wsgi_apps:{app}",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        wait_accepting(self.port, self.proc, TIMEOUT)

    def close(self) -> None:
        terminate(self.proc, TIMEOUT)
        self.log.close()


@pytest.fixture
def flask_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "served.txt"
    path.write_bytes(b"a file sent by Flask\n" * 5000)
    monkeypatch.setenv("WSGI_TEST_FILE", str(path))
    # one string hash for both servers: Flask lists a 405's Allow from a set
    monkeypatch.setenv("PYTHONHASHSEED", "0")
    return path


@pytest.fixture
def flask_servers(tmp_path: Path, flask_file: Path) -> Iterator[tuple[int, int]]:
    server, port = ioreactor(tmp_path, "flask_app")
    reference = Gunicorn(tmp_path, "flask_app")
    try:
        yield port, reference.port
    finally:
        reference.close()
        server.kill()
    log = server.log()  # Flask logs its own /fail; nothing else may be
    assert log.count("Traceback") == log.count("RuntimeError: a view failed"), log


#: The request set of the Flask differential test: method, path, keyword arguments.
FLASK_REQUESTS: list[tuple[str, str, dict[str, Any]]] = [
    ("GET", "/", {}),
    ("HEAD", "/", {}),
    ("GET", "/users/42?q=x%20y", {}),
    ("GET", "/users/nope", {}),
    ("GET", "/missing", {}),
    ("POST", "/", {}),
    ("POST", "/form", {"data": {"a": "1", "b": "two words", "c": "é"}}),
    ("POST", "/json", {"json": {"k": [1, 2, 3], "s": "x"}}),
    (
        "PUT",
        "/json",
        {"content": b'{"chunked": true}', "headers": {"Content-Type": "application/json"}},
    ),
    ("POST", "/upload", {"files": {"file": ("data.bin", bytes(range(256)) * 400)}}),
    ("GET", "/stream", {}),
    ("GET", "/file", {}),
    ("HEAD", "/file", {}),
    ("GET", "/fail", {}),
    ("GET", "/redirect", {}),
    ("GET", "/cookie", {}),
    ("OPTIONS", "/users/1", {}),
]


def test_flask_against_gunicorn(flask_servers: tuple[int, int]) -> None:
    ours, theirs = flask_servers
    with httpx.Client(timeout=TIMEOUT, follow_redirects=False) as client:
        for method, path, kwargs in FLASK_REQUESTS:
            if "files" in kwargs:  # one multipart body for both (the boundary is random)
                request = client.build_request(method, f"http://x{path}", **kwargs)
                kwargs = {"content": request.read(), "headers": dict(request.headers)}
                kwargs["headers"].pop("host")
            mine = client.request(method, f"http://127.0.0.1:{ours}{path}", **kwargs)
            reference = client.request(method, f"http://127.0.0.1:{theirs}{path}", **kwargs)
            assert comparable(mine, OWN_FIELDS) == comparable(reference, OWN_FIELDS), (method, path)
            assert mine.status_code != 500 or path == "/fail", (method, path, mine.text)


def test_flask_by_curl_and_http_10(flask_servers: tuple[int, int], flask_file: Path) -> None:
    ours, _ = flask_servers
    out = subprocess.run(
        ["curl", "-s", "-i", f"http://127.0.0.1:{ours}/"],
        capture_output=True,
        timeout=TIMEOUT,
        check=True,
    ).stdout
    assert out.startswith(b"HTTP/1.1 200 OK\r\n") and out.endswith(b"\r\n\r\nHello, World!")
    out = subprocess.run(
        ["curl", "-s", "-0", "-o", "-", f"http://127.0.0.1:{ours}/file"],
        capture_output=True,
        timeout=TIMEOUT,
        check=True,
    ).stdout
    assert out == flask_file.read_bytes()
    out = subprocess.run(
        ["curl", "-s", "-i", "-0", f"http://127.0.0.1:{ours}/stream"],
        capture_output=True,
        timeout=TIMEOUT,
        check=True,
    ).stdout
    head, _, body = out.partition(b"\r\n\r\n")
    assert b"Connection: close" in head and b"chunked" not in head  # HTTP/1.0: no chunks
    assert body == b"".join(b"line %d\n" % i for i in range(5))


@pytest.mark.skipif(shutil.which("wrk") is None, reason="needs wrk (apt-get install wrk)")
def test_flask_under_wrk(tmp_path: Path) -> None:
    server, port = ioreactor(tmp_path, "flask_app", "--threads", "4")
    with server:
        out = subprocess.run(
            ["wrk", "-t1", "-c50", "-d2s", f"http://127.0.0.1:{port}/"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout
        assert "Non-2xx" not in out and "Socket errors" not in out, out
        requests = int(out.split(" requests in ")[0].split()[-1])
        assert requests > 100, out
    assert "Traceback" not in server.log()


DJANGO_REQUESTS: list[tuple[str, str, dict[str, Any]]] = [
    ("GET", "/", {}),
    ("GET", "/json?q=1", {}),
    ("HEAD", "/json", {}),
    ("POST", "/form", {"data": {"x": "1", "y": "2"}}),
    ("GET", "/stream", {}),
    ("GET", "/text", {}),
    ("GET", "/nowhere", {}),
]


def test_django_against_gunicorn(tmp_path: Path) -> None:
    server, ours = ioreactor(tmp_path, "django_app")
    reference = Gunicorn(tmp_path, "django_app")
    try:
        with httpx.Client(timeout=TIMEOUT) as client:
            for method, path, kwargs in DJANGO_REQUESTS:
                mine = client.request(method, f"http://127.0.0.1:{ours}{path}", **kwargs)
                theirs = client.request(
                    method, f"http://127.0.0.1:{reference.port}{path}", **kwargs
                )
                assert comparable(mine, OWN_FIELDS) == comparable(theirs, OWN_FIELDS), (
                    method,
                    path,
                )
            hello = client.get(f"http://127.0.0.1:{ours}/json?q=1")
            assert json.loads(hello.content) == {"message": "Hello, World!", "q": "1"}
    finally:
        reference.close()
        server.kill()
    assert "Traceback" not in server.log(), server.log()
