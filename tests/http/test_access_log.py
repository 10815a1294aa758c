"""The access log of ``ioreactor serve --access-log``: Combined (default), Common or JSON
lines, each with the request's X-Request-ID -- the client's, or a new one the response
carries."""

from __future__ import annotations

import http.client
import json
import re
from pathlib import Path

import pytest

from ioreactor.http.access_log import with_field
from ioreactor.http.response import Response
from support.cli_process import http_get, start_serve


def get(port: int, path: str, headers: dict[str, str]) -> http.client.HTTPResponse:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", path, headers=headers)
    reply = conn.getresponse()
    reply.read()
    conn.close()
    return reply


@pytest.mark.parametrize("fmt", ["combined", "common"])
def test_text_formats_end_with_the_request_id(tmp_path: Path, fmt: str) -> None:
    server, port = start_serve(
        tmp_path, "--workers", "0", "--access-log", "--access-log-format", fmt
    )
    with server:
        mine = get(port, "/echo?x=1", {"X-Request-ID": "req-42", "User-Agent": "probe/1"})
        assert mine.getheader("X-Request-ID") is None  # the client's: not echoed again
        made = get(port, "/nope", {})
        generated = made.getheader("X-Request-ID")
        assert generated and re.fullmatch(r"[0-9a-f]{32}", generated)
        line = server.wait_for(r"ioreactor\.http\.access: (127\.0\.0\.1:\d+ .*req-42.*)").group(1)
        when = r"\[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d \+0000\]"
        tail = ' "-" "probe/1" "req-42"' if fmt == "combined" else ' "req-42"'
        assert re.fullmatch(
            rf'127\.0\.0\.1:\d+ - - {when} "GET /echo\?x=1 HTTP/1\.1" 200 \d+' + re.escape(tail),
            line,
        ), line
        server.wait_for(rf'"GET /nope HTTP/1\.1" 404 \d+ .*"{generated}"')


def test_json_lines(tmp_path: Path) -> None:
    server, port = start_serve(
        tmp_path, "--workers", "0", "--access-log", "--access-log-format", "json"
    )
    with server:
        assert http_get(port, "/", {"X-Request-ID": "abc", "Referer": "http://a/"})[0] == 200
        line = server.wait_for(r"ioreactor\.http\.access: (\{.*\})").group(1)
        entry = json.loads(line)
        assert entry["method"] == "GET" and entry["target"] == "/" and entry["status"] == 200
        assert entry["bytes"] == 13 and entry["request_id"] == "abc"
        assert entry["referer"] == "http://a/" and entry["remote"].startswith("127.0.0.1:")


def test_a_shared_response_is_copied_not_changed() -> None:
    shared = Response("hi", headers={"X-App": "1"})
    tagged = with_field(shared, "X-Request-ID", "r1")
    assert isinstance(tagged, Response) and tagged is not shared
    assert b"X-Request-ID: r1" in tagged.fields and b"X-Request-ID" not in shared.fields
