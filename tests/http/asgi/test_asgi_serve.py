"""``ioreactor serve`` running real FastAPI and Starlette applications in a real process,
driven by real clients: httpx, curl, the websockets library's client and wrk; lifespan
startup and shutdown, a failing startup, graceful shutdown with requests and WebSockets
in flight, the ASGI-specific flags.

The applications are in ``asgi_apps.py`` beside this file (``--app-dir``)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import websockets.sync.client as ws_client
from asgi_apps import FILE_BODY
from websockets.exceptions import ConnectionClosed

from ioreactor.testing import wait_until
from support.cli_process import CliProcess

HERE = Path(__file__).parent
BANNER = r"\((asgi)\) on http://127\.0\.0\.1:(\d+) \(pid \d+\)"
TIMEOUT = 30.0


def serve(tmp_path: Path, app: str, *flags: str, name: str = "serve") -> CliProcess:
    return CliProcess(
        tmp_path,
        "serve",
        app,
        "--app-dir",
        str(HERE),
        "--listen",
        "127.0.0.1:0",
        *(flags or ("--workers", "0")),
        name=name,
    )


@pytest.fixture(scope="module")
def fastapi_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("fastapi")
    with serve(tmp, "asgi_apps:fastapi_app", "--workers", "0", "--shutdown-timeout", "5") as proc:
        port = proc.wait_for(BANNER).group(2)
        yield f"http://127.0.0.1:{port}"
        assert proc.stop() == 0, proc.log()


def test_fastapi_routing_json_and_errors(fastapi_server: str) -> None:
    with httpx.Client(base_url=fastapi_server, timeout=TIMEOUT) as client:
        root = client.get("/")
        assert root.status_code == 200 and root.json() == {"message": "Hello World"}
        assert root.headers["x-middleware"] == "yes"
        assert root.headers["server"] == "ioreactor"
        assert client.get("/items/7", params={"q": "x y"}).json() == {"item_id": 7, "q": "x y"}
        assert client.get("/items/notanumber").status_code == 422
        created = client.post("/items", json={"name": "pen", "price": 1.25, "tags": ["a"]})
        assert created.status_code == 201
        assert created.json() == {"name": "pen", "total": 2.5, "tags": ["a"]}
        invalid = client.post("/items", json={"name": "pen"})
        assert invalid.status_code == 422 and invalid.json()["detail"][0]["loc"] == [
            "body",
            "price",
        ]
        assert client.get("/sync").text == "from a thread"
        assert client.get("/missing").json() == {"detail": "nothing here"}
        teapot = client.get("/teapot")
        assert teapot.status_code == 418 and teapot.json()["path"] == "/teapot"
        assert client.get("/crash").status_code == 500
        assert client.get("/nope").status_code == 404


def test_fastapi_lifespan_state_streaming_files_and_background_tasks(fastapi_server: str) -> None:
    with httpx.Client(base_url=fastapi_server, timeout=TIMEOUT) as client:
        assert client.get("/state").json() == {"greeting": "hello from lifespan", "root_path": ""}
        with client.stream("GET", "/stream") as streamed:
            assert streamed.headers["transfer-encoding"] == "chunked"
            lines = list(streamed.iter_lines())
        assert lines == [f"line {i}" for i in range(5)]
        file = client.get("/file")
        assert file.content == FILE_BODY
        assert int(file.headers["content-length"]) == len(FILE_BODY)
        ranged = client.get("/file", headers={"Range": "bytes=10-19"})
        assert ranged.status_code == 206 and ranged.content == FILE_BODY[10:20]
        assert client.post("/background").json() == {"scheduled": "yes"}
        deadline = time.monotonic() + TIMEOUT
        while "task ran" not in client.get("/background/done").json()["done"]:
            assert time.monotonic() < deadline, "the background task never ran"
            time.sleep(0.02)


def test_fastapi_websocket_with_the_websockets_client(fastapi_server: str) -> None:
    url = fastapi_server.replace("http://", "ws://") + "/ws"
    with ws_client.connect(url) as ws:
        for text in ("one", "two", "three"):
            ws.send(text)
            assert ws.recv(TIMEOUT) == f"echo: {text}"


def test_curl_talks_to_it(fastapi_server: str) -> None:
    curl = shutil.which("curl")
    if curl is None:
        pytest.fail("this test needs curl (Debian: apt-get install curl)")
    out = subprocess.run(
        [
            curl,
            "-s",
            "-i",
            "-X",
            "POST",
            "-H",
            "content-type: application/json",
            "--data",
            '{"name": "x", "price": 2}',
            fastapi_server + "/items",
        ],
        capture_output=True,
        timeout=TIMEOUT,
        check=True,
    ).stdout
    head, _, body = out.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 201 ")
    assert json.loads(body) == {"name": "x", "total": 4.0, "tags": []}
    # curl sends Expect: 100-continue for a large body: answered when FastAPI reads it
    big = json.dumps({"name": "y" * 2_000_000, "price": 1})
    out = subprocess.run(
        [
            curl,
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-H",
            "content-type: application/json",
            "--data-binary",
            "@-",
            fastapi_server + "/items",
        ],
        input=big.encode(),
        capture_output=True,
        timeout=TIMEOUT,
        check=True,
    ).stdout
    assert out == b"413"  # over the default 1 MiB body limit, refused before the app


def test_wrk_keep_alive_load(fastapi_server: str) -> None:
    wrk = shutil.which("wrk")
    if wrk is None:
        pytest.fail("this test needs wrk (Debian: apt-get install wrk)")
    out = subprocess.run(
        [wrk, "-t1", "-c20", "-d1s", fastapi_server + "/"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=True,
    ).stdout
    assert "Non-2xx" not in out and "Socket errors" not in out, out
    requests = int(out.split(" requests in ")[0].split()[-1])
    assert requests > 100, out


@pytest.mark.parametrize(
    ("app", "flags"),
    [
        ("asgi_apps:starlette_app", ()),
        ("asgi_apps:create_app", ("--factory",)),
        ("asgi_apps:Asgi2App", ("--interface", "asgi")),
    ],
)
def test_starlette_factory_and_asgi2(tmp_path: Path, app: str, flags: tuple[str, ...]) -> None:
    with serve(tmp_path, app, "--workers", "0", *flags) as proc:
        base = f"http://127.0.0.1:{proc.wait_for(BANNER).group(2)}"
        with httpx.Client(base_url=base, timeout=TIMEOUT) as client:
            if app.endswith("Asgi2App"):
                assert client.get("/").text == "asgi2"
            else:
                assert client.get("/hello/ada").text == "starlette ada"
                url = base.replace("http://", "ws://") + "/ws"
                with ws_client.connect(url, subprotocols=["v1"]) as ws:
                    assert ws.subprotocol == "v1"
                    ws.send(b"abc")
                    assert ws.recv(TIMEOUT) == b"cba"
                    with pytest.raises(ConnectionClosed) as closed:
                        ws.recv(TIMEOUT)
                    assert closed.value.rcvd is not None
                    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (4000, "done")
        assert proc.stop() == 0


def test_two_workers_and_root_path(tmp_path: Path) -> None:
    with serve(tmp_path, "asgi_apps:fastapi_app", "--workers", "2", "--root-path", "/api") as proc:
        port = proc.wait_for(r"on http://127\.0\.0\.1:(\d+)").group(1)
        proc.wait_for(r"worker 1 \(pid \d+\) (listening|ready)")
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=TIMEOUT) as client:
            for _ in range(10):
                assert client.get("/state").json()["root_path"] == "/api"
        assert proc.stop() == 0


def test_proxy_headers_from_a_trusted_peer(tmp_path: Path) -> None:
    app = tmp_path / "whoami.py"
    app.write_text(
        "async def app(scope, receive, send):\n"
        "    if scope['type'] != 'http':\n        return\n"
        "    body = f\"{scope['client'][0]} {scope['scheme']}\".encode()\n"
        "    await send({'type': 'http.response.start', 'status': 200, 'headers': []})\n"
        "    await send({'type': 'http.response.body', 'body': body})\n"
    )
    headers = {"X-Forwarded-For": "198.51.100.4", "X-Forwarded-Proto": "https"}
    for flags, expected in (
        (("--proxy-headers",), "198.51.100.4 https"),
        (("--proxy-headers", "--forwarded-allow-ips", "10.0.0.0/8"), "127.0.0.1 http"),
        ((), "127.0.0.1 http"),
    ):
        with CliProcess(
            tmp_path,
            "serve",
            "whoami:app",
            "--app-dir",
            str(tmp_path),
            "--listen",
            "127.0.0.1:0",
            "--workers",
            "0",
            *flags,
        ) as proc:
            port = proc.wait_for(r"on http://127\.0\.0\.1:(\d+)").group(1)
            got = httpx.get(f"http://127.0.0.1:{port}/", headers=headers, timeout=TIMEOUT).text
            assert got == expected, flags
            assert proc.stop() == 0


def test_metrics_access_log_and_request_limit_wrap_an_asgi_app(tmp_path: Path) -> None:
    """The production wrappers keep the ASGI application's asyncio loop and lifespan
    (they forward every hook), and they see its responses: each request is one access
    log line with its status and one count in /metrics."""
    from prometheus_client.parser import text_string_to_metric_families

    flags = ("--workers", "0", "--access-log", "--metrics-listen", "127.0.0.1:0",
             "--max-requests", "1000", "--proxy-headers")  # fmt: skip
    with serve(tmp_path, "asgi_apps:fastapi_app", *flags) as proc:
        port = proc.wait_for(BANNER).group(2)
        metrics = proc.wait_for(r"metrics on (http://127\.0\.0\.1:\d+/metrics)").group(1)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=TIMEOUT) as client:
            assert client.get("/state").json()["greeting"]  # the lifespan ran
            assert client.get("/items/7").status_code == 200
            assert client.get("/items/x").status_code == 422
            assert client.get("/", headers={"X-Forwarded-For": "198.51.100.4"}).status_code == 200
            # answered after an await: the response is encoded by the ASGI cycle
            assert client.get("/slow", params={"ms": 20}).text == "slept 20"
        proc.wait_for(r'"GET /items/x HTTP/1\.1" 422 ')
        proc.wait_for(r'"GET /slow\?ms=20 HTTP/1\.1" 200 ')
        proc.wait_for(r'198\.51\.100\.4\S* - - \[.*"GET / HTTP/1\.1" 200 ')  # forwarded
        seen: dict[tuple[str, str], float] = {}

        def counted() -> bool:
            text = httpx.get(metrics, timeout=TIMEOUT).text
            seen.clear()
            for family in text_string_to_metric_families(text):
                for sample in family.samples:
                    if sample.name == "ioreactor_http_requests_total":
                        key = (sample.labels["method"], sample.labels["status"])
                        seen[key] = sample.value
            return seen.get(("GET", "2xx")) == 4

        assert wait_until(counted), seen
        assert seen[("GET", "4xx")] == 1
        assert proc.stop() == 0
    assert "Traceback" not in proc.log()


def test_a_failing_startup_exits_non_zero_before_accepting(tmp_path: Path) -> None:
    env_flag = "ASGI_APPS_FAIL_STARTUP"
    os.environ[env_flag] = "1"
    try:
        with serve(tmp_path, "asgi_apps:fastapi_app", "--workers", "0") as proc:
            assert proc.wait() == 3
    finally:
        del os.environ[env_flag]
    log = proc.log()
    assert "the database is down" in log
    assert "listening" not in log


def test_graceful_shutdown_with_requests_and_websockets_in_flight(tmp_path: Path) -> None:
    """SIGTERM: stop accepting, the request in flight is answered with Connection:
    close, the WebSocket gets 1001 and its close handshake, a request that never ends
    is cancelled at the timeout, the lifespan shutdown runs, exit 0."""
    with serve(
        tmp_path, "asgi_apps:fastapi_app", "--workers", "0", "--shutdown-timeout", "2"
    ) as proc:
        port = int(proc.wait_for(BANNER).group(2))
        base = f"http://127.0.0.1:{port}"
        results: dict[str, object] = {}

        def slow() -> None:
            with httpx.Client(timeout=TIMEOUT) as client:
                response = client.get(base + "/slow", params={"ms": 800})
                results["slow"] = (response.status_code, response.headers.get("connection"))

        def hang() -> None:
            try:
                with httpx.Client(timeout=TIMEOUT) as client:
                    client.get(base + "/hang")
                results["hang"] = "answered"
            except httpx.HTTPError as exc:
                results["hang"] = type(exc).__name__

        url = base.replace("http://", "ws://") + "/ws"
        with ws_client.connect(url) as ws:
            ws.send("before")
            assert ws.recv(TIMEOUT) == "echo: before"
            threads = [threading.Thread(target=slow), threading.Thread(target=hang)]
            for thread in threads:
                thread.start()
            time.sleep(0.3)
            started = time.monotonic()
            proc.proc.send_signal(signal.SIGTERM)
            with pytest.raises(ConnectionClosed) as closed:
                ws.recv(TIMEOUT)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
        assert proc.wait() == 0, proc.log()
        elapsed = time.monotonic() - started
        for thread in threads:
            thread.join(TIMEOUT)
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
    assert results["slow"] == (200, "close")
    assert results["hang"] in ("RemoteProtocolError", "ReadError")
    assert elapsed < 2 + 5
