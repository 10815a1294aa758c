"""Units of the HTTP package: router, headers, request, response, date cache, limits."""

from __future__ import annotations

import os

import pytest

from ioreactor.http.app import App
from ioreactor.http.date import DateCache
from ioreactor.http.errors import HttpError
from ioreactor.http.head import status_line
from ioreactor.http.headers import HeaderError, Headers, encode_field
from ioreactor.http.limits import Limits
from ioreactor.http.request import Request, split_target
from ioreactor.http.response import (
    FileResponse,
    Response,
    ResponseCache,
    StreamingResponse,
)
from ioreactor.http.router import Router


def handler(request: Request) -> str:
    return "x"


def test_router_literal_params_and_methods() -> None:
    router = Router()
    root = router.add("/", handler)
    user = router.add("/users/{id}", handler, ["GET", "PUT"])
    files = router.add("/files/{rest:path}", handler)
    assert router.resolve("GET", "/") == (root, {})
    assert router.resolve("HEAD", "/")[0] is root
    assert router.resolve("PUT", "/users/42") == (user, {"id": "42"})
    assert router.resolve("GET", "/files/a/b/c.txt") == (files, {"rest": "a/b/c.txt"})
    with pytest.raises(HttpError) as missing:
        router.resolve("GET", "/users/1/extra")
    assert missing.value.status == 404
    with pytest.raises(HttpError) as wrong:
        router.resolve("DELETE", "/users/1")
    assert wrong.value.status == 405
    assert dict(wrong.value.headers)["Allow"] == "GET, HEAD, PUT"
    assert {r.pattern for r in router.routes()} == {"/", "/users/{id}", "/files/{rest:path}"}


def test_router_plain_table_holds_only_literal_loop_routes() -> None:
    """The dispatcher's first lookup: path -> method -> handler, for routes without
    parameters that run on the loop and take the whole body."""

    def root(request: Request) -> str:
        return "root"

    def any_method(request: Request) -> str:
        return "any"

    router = Router()
    router.add("/", root, ["GET", "POST"])
    router.add("/pool", handler, blocking=True)
    router.add("/stream", handler, ["POST"], stream_body=True)
    router.add("/users/{id}", handler)
    router.add("/any", any_method, ["HEAD", "PROPFIND"])
    router.add("/caf\u00e9", handler)
    assert router.plain == {
        "/": {"GET": root, "POST": root},
        "/any": {"HEAD": any_method, "PROPFIND": any_method},
        "/caf\u00e9": {"GET": handler},
    }


def test_router_rejects_bad_routes() -> None:
    router = Router()
    router.add("/a", handler)
    with pytest.raises(ValueError, match="already routed"):
        router.add("/a", handler)
    with pytest.raises(ValueError, match="start with"):
        router.add("a", handler)
    with pytest.raises(ValueError, match="malformed"):
        router.add("/x/{y", handler)
    with pytest.raises(ValueError, match="both"):
        router.add("/b", handler, blocking=True, stream_body=True)


def test_app_decorator_registers() -> None:
    app = App(server_name="demo")

    @app.route("/p/{name}", methods=["POST"], blocking=True)
    def post(request: Request) -> str:
        return request.params["name"]

    route, params = app.router.resolve("POST", "/p/z")
    assert route.handler is post and route.blocking and params == {"name": "z"}


def test_headers_case_insensitive_and_repeated() -> None:
    headers = Headers([(b"Host", b"a"), (b"X-Tag", b"1"), (b"x-tag", b"2")])
    assert headers.get("HOST") == "a"
    assert headers["x-TAG"] == "1"
    assert headers.get_all("X-Tag") == ["1", "2"]
    assert "x-tag" in headers and "nope" not in headers
    assert headers.get("nope", "d") == "d"
    assert list(headers) == ["Host", "X-Tag", "x-tag"]
    assert len(headers) == 3
    with pytest.raises(KeyError):
        headers["missing"]


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("X", "a\r\nb"),
        ("X", "a\nb"),
        ("X", "a\rb"),
        ("X", "\0"),
        ("Bad Name", "v"),
        ("", "v"),
        ("X", "snow \u2603"),
    ],
)
def test_encode_field_refuses_what_must_not_be_sent(name: str, value: str) -> None:
    with pytest.raises(HeaderError):
        encode_field(name, value)


def test_request_target_forms() -> None:
    assert split_target("/a/b?x=1") == ("/a/b", "x=1")
    assert split_target("/a%20b/%2e%2e") == ("/a b/..", "")
    assert split_target("http://host:80/p?q") == ("/p", "q")
    assert split_target("http://host") == ("/", "")
    assert split_target("*") == ("*", "")
    request = Request("GET", "/s?a=1&b=2&a=3", headers=[(b"Content-Type", b"t/x")])
    assert request.query_params() == {"a": "3", "b": "2"}
    assert request.content_type == "t/x"
    assert request.keep_alive and Request("GET", "/", "1.0").keep_alive is False


def test_response_encoding() -> None:
    response = Response("hé", 201, headers={"X-A": "1"})
    wire = response.encode(b"", b"Server: s\r\n")
    head, _, body = wire.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 201 Created\r\nServer: s\r\nDate: ")
    assert b"Content-Type: text/plain; charset=utf-8\r\nX-A: 1\r\nContent-Length: 3" in head
    assert body == "hé".encode()
    assert response.encode(b"", b"", head=True).endswith(b"Content-Length: 3\r\n\r\n")
    no_content = Response(b"", 204).encode(b"", b"")
    assert b"Content-Length" not in no_content and no_content.endswith(b"\r\n\r\n")
    assert Response(b"\x00").fields.startswith(b"Content-Type: application/octet-stream")
    assert status_line(299) == b"HTTP/1.1 299 \r\n"
    with pytest.raises(ValueError):
        Response(status=1000)
    with pytest.raises(HeaderError):
        Response(headers={"Connection": "upgrade"})
    assert Response(headers={"Connection": "close"}).close


def test_streaming_response_buffers_until_bound_and_drops_after_cancel() -> None:
    from ioreactor.loop.event_loop import EventLoop

    loop = EventLoop()
    out: list[bytes] = []
    done: list[bool] = []
    stream = StreamingResponse()
    stream.write("a")
    stream.write(b"")
    stream.bind(loop, out.append, lambda: done.append(True), chunked=True, head_only=False)
    stream.write(b"bc")
    stream.end()
    stream.end()
    assert out == [b"1\r\na\r\n", b"2\r\nbc\r\n", b"0\r\n\r\n"] and done == [True]
    with pytest.raises(RuntimeError):
        stream.write("late")
    cancelled = StreamingResponse()
    cancelled.bind(loop, out.append, lambda: None, chunked=False, head_only=False)
    cancelled.cancel()
    cancelled.write("dropped")
    assert out[-1] == b"0\r\n\r\n"
    loop.close()


@pytest.mark.parametrize("status", [204, 304, 101])
def test_body_framed_responses_refuse_statuses_without_a_body(status: int) -> None:
    """A chunked or Content-Length body after a 204/304/1xx head would desynchronise
    the client's parser (and every pipelined response after it)."""
    with pytest.raises(ValueError, match=f"a {status} response has no body"):
        StreamingResponse(status)
    r, w = os.pipe()
    try:
        with pytest.raises(ValueError, match=f"a {status} response has no body"):
            FileResponse(r, length=0, status=status)
    finally:
        os.close(r)
        os.close(w)
    assert Response(status=status).encode(b"", b"").endswith(b"\r\n\r\n")


def test_file_response_owns_its_fd(tmp_path: pytest.TempPathFactory) -> None:
    import os
    from pathlib import Path

    path = Path(str(tmp_path)) / "f"
    path.write_bytes(b"12345")
    response = FileResponse.open(path, content_type="text/x")
    assert response.length == 5
    fd = response.fd
    response.release()
    response.release()
    with pytest.raises(OSError):
        os.fstat(fd)


def test_date_cache_formats_once_a_second() -> None:
    cache = DateCache()
    assert cache.refresh(1_000_000_000.2)
    line = cache.line
    assert line == b"Date: Sun, 09 Sep 2001 01:46:40 GMT\r\n"
    assert not cache.refresh(1_000_000_000.9)
    assert cache.line is line
    assert cache.refresh(1_000_000_001.0)


def test_text_responses_are_rebuilt_when_the_date_changes() -> None:
    from ioreactor.http.date import DATE

    cache = ResponseCache("ioreactor")
    wire = cache.texts.get("hi") or cache.text_response("hi")
    assert wire.startswith(b"HTTP/1.1 200 OK\r\nServer: ioreactor\r\n" + DATE.line)
    assert wire.endswith(b"Content-Length: 2\r\n\r\nhi")
    assert cache.texts["hi"] is wire
    DATE.refresh(1_000_000_000.0)  # another second: the next tick formats the current one
    cache.tick()
    assert "hi" not in cache.texts
    again = cache.text_response("hi")
    assert DATE.line in again and b"2001" not in again
    assert cache.text_response("x" * 1000) not in cache.texts.values()


def test_limits_validate() -> None:
    assert Limits().max_body == 1024 * 1024
    with pytest.raises(ValueError):
        Limits(max_body=0)
    with pytest.raises(ValueError):
        Limits(header_timeout=-1.0)
    with pytest.raises(ValueError):
        Limits(max_headers=True)
