"""The differential test: the same requests to the same FastAPI application served by
``ioreactor serve`` and by uvicorn (the reference implementation), in real processes;
the status codes, the header fields (but Date and Server) and the bodies must agree.

Header fields are compared as a multiset of (lower-case name, value): the order of
fields and the case of names are not part of HTTP's meaning, repeats and values are."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ioreactor.testing import free_port
from support.cli_process import CliProcess
from support.http import comparable
from support.server_process import wait_accepting

HERE = Path(__file__).parent
TIMEOUT = 30.0
#: Fields each server writes its own way.
OWN_FIELDS = {"date", "server"}

#: (method, path, extra arguments for httpx) for every request compared.
REQUESTS: list[tuple[str, str, dict[str, object]]] = [
    ("GET", "/", {}),
    ("HEAD", "/", {}),
    ("GET", "/items/42?q=hello%20world", {}),
    ("GET", "/items/notanumber", {}),
    ("POST", "/items", {"json": {"name": "pen", "price": 1.5, "tags": ["a", "b"]}}),
    ("POST", "/items", {"json": {"name": "no price"}}),
    ("POST", "/items", {"content": b"{not json", "headers": {"content-type": "application/json"}}),
    ("PUT", "/items", {"json": {}}),
    ("GET", "/sync", {}),
    ("GET", "/state", {}),
    ("GET", "/stream", {}),
    ("GET", "/file", {}),
    ("GET", "/file", {"headers": {"Range": "bytes=100-199"}}),
    ("GET", "/file", {"headers": {"Range": "bytes=999999-"}}),
    ("GET", "/missing", {}),
    ("GET", "/teapot", {}),
    ("GET", "/crash", {}),
    ("GET", "/no/such/path", {}),
    ("OPTIONS", "/", {}),
    ("GET", "/slow?ms=1", {}),
]


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    tmp = tmp_path_factory.mktemp("differential")
    port = free_port()
    uvicorn = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "asgi_apps:fastapi_app",
            "--app-dir",
            str(HERE),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--no-access-log",
            "--log-level",
            "warning",
            "--loop",
            "asyncio",
            "--http",
            "httptools",
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        with CliProcess(
            tmp,
            "serve",
            "asgi_apps:fastapi_app",
            "--app-dir",
            str(HERE),
            "--listen",
            "127.0.0.1:0",
            "--workers",
            "0",
        ) as ours:
            ours_port = ours.wait_for(r"on http://127\.0\.0\.1:(\d+)").group(1)
            wait_accepting(port, uvicorn, TIMEOUT)
            yield f"http://127.0.0.1:{ours_port}", f"http://127.0.0.1:{port}"
            assert ours.stop() == 0
    finally:
        uvicorn.terminate()
        uvicorn.wait(TIMEOUT)


@pytest.mark.parametrize(
    ("method", "path", "extra"), REQUESTS, ids=[f"{m} {p}" for m, p, _ in REQUESTS]
)
def test_same_answers_as_uvicorn(
    servers: tuple[str, str], method: str, path: str, extra: dict[str, object]
) -> None:
    ours, reference = servers
    answers = []
    for base in (ours, reference):
        with httpx.Client(base_url=base, timeout=TIMEOUT) as client:
            answers.append(comparable(client.request(method, path, **extra), OWN_FIELDS))  # type: ignore[arg-type]
    assert answers[0] == answers[1]


def test_pipelined_and_keep_alive_answers_match(servers: tuple[str, str]) -> None:
    """Several requests on one connection, pipelined in one write: the same bytes
    after the Date and Server fields are taken out."""
    raw = b"".join(
        b"GET %s HTTP/1.1\r\nHost: t\r\n\r\n" % path for path in (b"/", b"/items/1", b"/nope")
    )
    bodies = []
    for base in servers:
        port = int(base.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
            sock.sendall(raw)
            data = b""
            while data.count(b"HTTP/1.1 ") < 3 or not data.endswith(b"}"):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
        lines = [
            line.lower()
            for line in data.split(b"\r\n")
            if not line.lower().startswith((b"date:", b"server:"))
        ]
        bodies.append(sorted(lines))
    assert bodies[0] == bodies[1]
