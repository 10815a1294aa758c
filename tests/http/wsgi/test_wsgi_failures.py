"""Applications that fail: each gets its answer and one log line, and the server goes on.

raises -> 500; returns a non-iterable -> 500; start_response twice without exc_info ->
500; fails after its head went out -> the connection closes with the body cut (no
terminating chunk: the client sees a truncated response, never a short complete one);
never returns -> 503 at the pool deadline, for it and for what waits behind it, one
WARNING line; and the process still stops on SIGTERM with the call still hanging.
"""

from __future__ import annotations

import logging
import socket
import sys
import time
from pathlib import Path

import pytest
from wsgi_support import TIMEOUT, exchange, get, wsgi_server

from support import wsgi_apps
from support.cli_process import CliProcess
from support.http_responses import parse

TESTS_DIR = str(Path(__file__).resolve().parents[2])


@pytest.mark.parametrize(
    ("app", "message"),
    [
        (wsgi_apps.broken_raises, "the application raised"),
        (wsgi_apps.broken_not_iterable, "not iterable"),
        (wsgi_apps.broken_start_twice, "start_response() called twice"),
    ],
    ids=["raises", "non-iterable", "start-twice"],
)
def test_a_failing_call_is_a_500_and_one_log_line(
    app: object, message: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="ioreactor")
    with wsgi_server(app) as (server, _):
        raw = b"GET /a HTTP/1.1\r\nHost: t\r\n\r\n" + get("/b")  # keep-alive, then another
        data, _ = exchange(server.port, raw)
    replies = parse(data)
    assert [r.status for r in replies] == [500, 500]  # the connection went on after the first
    records = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(records) == 2, [r.getMessage() for r in records]  # one per failed call
    assert message in records[0].exc_text  # type: ignore[operator]


def test_a_failure_after_the_head_cuts_the_connection(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="ioreactor")
    with wsgi_server(wsgi_apps.broken_fails_midway) as (server, _):
        data, closed = exchange(server.port, b"GET / HTTP/1.1\r\nHost: t\r\n\r\n" + get("/"))
    (reply,) = parse(data)  # the second request is never answered
    assert closed and reply.status == 200 and reply.chunked
    assert reply.body == b"a first block\n" and not reply.complete  # no terminating chunk
    assert len(caplog.records) == 1 and "failed" in caplog.records[0].getMessage()


def test_a_call_that_never_returns_gets_503_and_what_waits_behind_it_too(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="ioreactor")
    wsgi_apps.HANG.clear()
    try:
        with wsgi_server(wsgi_apps.broken_hangs, threads=1, pool_timeout=1.0) as (server, _):
            port = server.port
            hung = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
            hung.sendall(b"GET /hang HTTP/1.1\r\nHost: t\r\n\r\n")
            time.sleep(0.2)  # the only thread takes it
            start = time.monotonic()
            # queued behind it, on other connections: no thread will be free in time
            waiting, _ = exchange(port, get("/other"))
            waited = time.monotonic() - start
            hung_reply = b""
            while b"\r\n\r\n" not in hung_reply:
                hung_reply += hung.recv(65536)
            # the hung call's connection goes on (its request was received whole)
            hung.sendall(get("/after"))
            later = b""
            while chunk := hung.recv(65536):
                later += chunk
            hung.close()
            assert parse(waiting)[0].status == 503
            assert waited < 1.0 + 2.5  # the deadline plus the check interval and slack
            assert parse(hung_reply)[0].status == 503
            # the thread is still stuck in /hang: /after waits its pool deadline too
            assert parse(later)[0].status == 503
    finally:
        wsgi_apps.HANG.set()
    stuck = [r for r in caplog.records if "has not answered" in r.getMessage()]
    assert len(stuck) == 1, [r.getMessage() for r in caplog.records]  # one line per hung call
    assert "GET /hang" in stuck[0].getMessage()


def test_a_server_with_a_hung_call_still_stops_on_sigterm(tmp_path: Path) -> None:
    with CliProcess(
        tmp_path,
        "serve",
        "support.wsgi_apps:broken_hangs",
        "--app-dir",
        TESTS_DIR,
        "--listen",
        "127.0.0.1:0",
        "--workers",
        "0",
        "--pool-timeout",
        "1",
        "--shutdown-timeout",
        "1",
    ) as server:
        match = server.wait_for(r"on http://127\.0\.0\.1:(\d+) \(pid")
        port = int(match.group(1))
        data, _ = exchange(port, get("/hang"))
        assert parse(data)[0].status == 503
        assert "has not answered GET /hang" in server.log()
        assert server.stop() == 0  # a daemon thread in the application does not hold it


def test_the_loop_keeps_serving_static_files_while_every_thread_hangs(tmp_path: Path) -> None:
    from ioreactor.http.static import StaticFiles

    (tmp_path / "a.txt").write_bytes(b"static while hung")
    wsgi_apps.HANG.clear()
    try:
        with wsgi_server(
            wsgi_apps.broken_hangs, threads=1, pool_timeout=5.0, static=StaticFiles(tmp_path)
        ) as (server, _):
            hung = socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT)
            hung.sendall(get("/hang"))
            time.sleep(0.2)
            start = time.monotonic()
            data, _ = exchange(server.port, get("/static/a.txt"))
            assert time.monotonic() - start < 2.0
            assert parse(data)[0].body == b"static while hung"
            hung.close()
    finally:
        wsgi_apps.HANG.set()


if sys.platform != "linux":  # pragma: no cover
    pytestmark = pytest.mark.skip(reason="the server's sendfile and signals are Linux-only")
