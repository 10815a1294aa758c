"""How a WSGI application's response reaches the wire: start_response (exc_info), the
write() callable, close() on the iterable, the framing (Content-Length, chunked,
close-delimited), HEAD and bodiless statuses, wsgi.file_wrapper by sendfile, pipelining,
and a slow reader that holds back the application's thread but not the loop."""

from __future__ import annotations

import logging
import os
import socket
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from wsgi_support import TIMEOUT, exchange, get, wsgi_server

from ioreactor.http.wsgi.response import FileWrapper
from ioreactor.testing import wait_until
from support.http_responses import parse
from support.wsgi_apps import FILE_SIZE, Closing, _responses_app, files_app_for, responses_app


@pytest.fixture
def quiet(caplog: pytest.LogCaptureFixture) -> Any:
    """Nothing is logged at WARNING or above (no 500, no validator complaint)."""
    caplog.set_level(logging.WARNING, logger="ioreactor")
    yield
    assert not caplog.records, [r.getMessage() for r in caplog.records]


@pytest.fixture(scope="module")
def port() -> Any:
    with wsgi_server(responses_app, threads=4) as (server, _):
        yield server.port


def one(port: int, raw: bytes) -> Any:
    data, closed = exchange(port, raw)
    replies = parse(data)
    assert len(replies) == 1, data[:300]
    return replies[0], data, closed


@pytest.mark.usefixtures("quiet")
def test_a_body_without_length_is_chunked_on_http_11(port: int) -> None:
    Closing.closed.clear()
    reply, _, _ = one(port, get("/chunked"))
    assert reply.status == 200 and reply.chunked and reply.header("content-length") is None
    assert reply.body == b"one,two,three" and reply.complete
    # close() is called on the iterable by the pool thread, after the last bytes left
    assert wait_until(lambda: "chunked" in Closing.closed, timeout=TIMEOUT)


@pytest.mark.usefixtures("quiet")
def test_a_body_without_length_ends_with_the_close_on_http_10(port: int) -> None:
    data, closed = exchange(port, b"GET /chunked HTTP/1.0\r\n\r\n")
    head, _, body = data.partition(b"\r\n\r\n")
    assert closed and body == b"one,two,three"
    assert b"Transfer-Encoding" not in head and b"Connection: close" in head


@pytest.mark.usefixtures("quiet")
def test_generator_blocks_stream_in_order(port: int) -> None:
    reply, _, _ = one(port, get("/generator?50"))
    assert reply.body == b"".join(b"tick %d\n" % i for i in range(50)) and reply.chunked


@pytest.mark.usefixtures("quiet")
def test_write_callable_then_iterable(port: int) -> None:
    reply, _, _ = one(port, get("/write"))
    assert reply.body == b"written,also written,returned"


@pytest.mark.usefixtures("quiet")
def test_start_response_with_exc_info_before_the_head_replaces_it(port: int) -> None:
    reply, _, _ = one(port, get("/exc-info"))
    assert reply.status == 502 and reply.body == b"replaced"


@pytest.mark.usefixtures("quiet")
def test_the_application_reason_phrase_and_repeated_fields(port: int) -> None:
    reply, data, _ = one(port, get("/reason"))
    assert data.startswith(b"HTTP/1.1 299 Custom Reason\r\n")
    reply, _, _ = one(port, get("/cookies"))
    assert reply.all("set-cookie") == ["a=1", "b=2"]
    assert reply.all("content-length") == ["7"]  # once, where the application put it


@pytest.mark.usefixtures("quiet")
def test_bodiless_statuses(port: int) -> None:
    data, _ = exchange(port, get("/no-content"))
    assert data.startswith(b"HTTP/1.1 204 No Content\r\n") and b"Content-Length" not in data
    assert data.endswith(b"\r\n\r\n")
    data, _ = exchange(port, get("/not-modified"))
    assert data.startswith(b"HTTP/1.1 304 Not Modified\r\n") and data.endswith(b"\r\n\r\n")


@pytest.mark.usefixtures("quiet")
def test_head_has_the_length_and_no_body(port: int) -> None:
    data, _ = exchange(port, get("/cookies", method="HEAD"))
    head, _, body = data.partition(b"\r\n\r\n")
    assert b"Content-Length: 7" in head and body == b""
    data, _ = exchange(port, get("/chunked", method="HEAD"))
    head, _, body = data.partition(b"\r\n\r\n")
    assert b"Transfer-Encoding" not in head and body == b""


@pytest.mark.usefixtures("quiet")
def test_more_body_than_content_length_is_cut(port: int) -> None:
    reply, _, _ = one(port, get("/longer"))
    assert reply.body == b"12345"


@pytest.mark.usefixtures("quiet")
def test_pipelined_requests_are_answered_in_order(port: int) -> None:
    paths = ["/sleep?0.2", "/chunked", "/write", "/sleep?0.05", "/cookies", "/generator?3"]
    raw = b"".join(f"GET {p} HTTP/1.1\r\nHost: t\r\n\r\n".encode() for p in paths) + get("/reason")
    data, _ = exchange(port, raw)
    replies = parse(data)
    assert [r.body for r in replies] == [
        b"slept",
        b"one,two,three",
        b"written,also written,returned",
        b"slept",
        b"cookies",
        b"tick 0\ntick 1\ntick 2\n",
        b"custom",
    ]


@pytest.mark.usefixtures("quiet")
def test_large_streamed_body_byte_for_byte(port: int) -> None:
    size = 5_000_123
    with httpx.Client(timeout=TIMEOUT) as client:
        reply = client.get(f"http://127.0.0.1:{port}/large?{size}")
    block = bytes(range(256)) * 256
    expected = (block * (size // len(block) + 1))[:size]
    assert reply.status_code == 200 and reply.content == expected


def test_a_slow_reader_holds_the_thread_not_the_loop(caplog: pytest.LogCaptureFixture) -> None:
    """A client that does not read a 64 MB response: the application's generator stops
    a bounded distance ahead (the high water mark plus the kernel's buffers), and the
    same server keeps answering other clients meanwhile. When the reader reads, every
    byte arrives."""
    produced = [0]
    block = b"x" * 65536

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        if environ["PATH_INFO"] != "/big":
            return _responses_app(environ, start_response)
        start_response("200 OK", [("Content-Type", "application/octet-stream")])

        def blocks() -> Any:
            for _ in range(1024):
                produced[0] += len(block)
                yield block

        return blocks()

    with wsgi_server(app, threads=2) as (server, _):
        slow = socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT)
        slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        slow.sendall(get("/big"))
        time.sleep(1.0)
        ahead = produced[0]
        time.sleep(0.5)
        assert produced[0] == ahead, "the generator kept going while nobody read"
        assert ahead < 8 * 1024 * 1024, ahead  # HWM 1 MiB + socket buffers, not 64 MB
        # the loop and the other thread still serve
        with httpx.Client(timeout=TIMEOUT) as client:
            assert client.get(f"http://127.0.0.1:{server.port}/cookies").text == "cookies"
        received = 0
        while chunk := slow.recv(1 << 20):
            received += len(chunk)
        slow.close()
    assert produced[0] == 1024 * len(block)
    assert received > 1024 * len(block)  # the body, its chunk framing and the head


def test_a_client_that_leaves_mid_body_gets_the_iterable_closed() -> None:
    Closing.closed.clear()
    with wsgi_server(responses_app, threads=2) as (server, _):
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT)
        sock.sendall(get("/large?200000000"))
        sock.recv(65536)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        sock.close()  # a reset
        deadline = time.monotonic() + TIMEOUT
        while "large" not in Closing.closed:
            assert time.monotonic() < deadline, "close() never called"
            time.sleep(0.05)


@pytest.fixture
def data_file(tmp_path: Path) -> Path:
    path = tmp_path / "data.bin"
    path.write_bytes(os.urandom(FILE_SIZE))
    return path


class NoRead:
    """A file whose read() fails: only a zero-copy send can serve it."""

    def __init__(self, path: Path) -> None:
        self.handle = open(path, "rb")  # noqa: SIM115
        self.closed = False

    def fileno(self) -> int:
        return self.handle.fileno()

    def read(self, size: int = -1) -> bytes:
        raise AssertionError("read() called: the file was not sent with sendfile")

    def close(self) -> None:
        self.closed = True
        self.handle.close()


@pytest.mark.usefixtures("quiet")
def test_file_wrapper_is_sent_with_sendfile(data_file: Path) -> None:
    files: list[NoRead] = []

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        assert environ["wsgi.file_wrapper"] is FileWrapper
        handle = NoRead(data_file)
        files.append(handle)
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return environ["wsgi.file_wrapper"](handle)

    with wsgi_server(app) as (server, _):
        reply, _, _ = one(server.port, get("/"))
        data, _ = exchange(server.port, get("/", method="HEAD"))
    assert reply.status == 200 and reply.body == data_file.read_bytes()
    assert reply.header("content-length") == str(FILE_SIZE)
    assert data.endswith(b"\r\n\r\n") and b"Content-Length: %d" % FILE_SIZE in data
    assert all(f.closed for f in files)  # the application's file closed; ours was a dup


@pytest.mark.usefixtures("quiet")
@pytest.mark.parametrize("path", ["/file", "/file-no-length", "/file-at"])
def test_file_wrapper_routes(data_file: Path, path: str) -> None:
    with wsgi_server(files_app_for(str(data_file.parent))) as (server, _):
        reply, _, _ = one(server.port, get(path))
    expected = data_file.read_bytes()[1000 if path == "/file-at" else 0 :]
    assert reply.body == expected and reply.header("content-length") == str(len(expected))
