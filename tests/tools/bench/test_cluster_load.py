"""The cluster test's load generator on loopback, against a real ``ioreactor serve``: every
request the schedule makes is recorded once, at the planned rate; a server that dies,
refuses, answers wrongly or not at all shows up as failed requests of the right kind,
and the load carries on through it.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from ioreactor.testing import free_port
from ioreactor_tools.bench.cluster_load import (
    ClusterLoadConfig,
    ClusterLoadResult,
    Record,
    parse_target,
    run_cluster_load,
)
from ioreactor_tools.bench.pinning import ServerProcess


def serve(port: int) -> ServerProcess:
    command = [sys.executable, "-m", "ioreactor", "serve", "--listen", f"127.0.0.1:{port}"]
    return ServerProcess([*command, "--workers", "0"], port=port)


def answer_wrongly(listener: socket.socket) -> None:
    """Answer every request on every connection ``200 wrong`` (one request per read)."""

    def answer(conn: socket.socket) -> None:
        with conn:
            while data := conn.recv(65536):
                for _ in range(data.count(b" HTTP/1.1\r\n")):
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nwrong")

    while True:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        threading.Thread(target=answer, args=(conn,), daemon=True).start()


def test_steady_load_against_a_server_every_request_ok_at_the_rate() -> None:
    port = free_port()
    with serve(port):
        result = run_cluster_load(
            ClusterLoadConfig("127.0.0.1", port, rate=400, conns=4, duration=1.0)
        )
    assert result.failed() == []
    # 400 are due in the window (+1 per slot edge): never more; a loaded test run may
    # lag the schedule, never run ahead of it.
    assert 200 <= len(result.records) <= 404
    gets, posts = result.select("GET"), result.select("POST")
    assert abs(len(gets) - len(posts)) <= 4  # they alternate on each connection
    assert all(result.start <= r.sent <= r.done for r in result.records)
    # Paced, not bursty: in every 0.25 s slice, about a quarter of the requests.
    for i in range(4):
        part = result.select(
            sent_after=result.start + i / 4, sent_before=result.start + (i + 1) / 4
        )
        assert 40 <= len(part) <= 120


def test_a_server_killed_mid_load_fails_requests_by_kind_and_the_load_goes_on() -> None:
    port = free_port()
    server = serve(port).start()
    killed_at: list[float] = []

    def kill_later() -> None:
        time.sleep(0.5)
        killed_at.append(time.monotonic())
        server.stop()

    killer = threading.Thread(target=kill_later)
    killer.start()
    try:
        result = run_cluster_load(
            ClusterLoadConfig("127.0.0.1", port, rate=200, conns=2, duration=1.2)
        )
    finally:
        killer.join()
        server.stop()
    before = result.select(sent_before=killed_at[0])
    after = result.select(sent_after=killed_at[0] + 0.1)
    assert before and all(r.ok for r in before)
    # Every request due after the server is gone is still made, and fails: refused.
    assert len(after) >= 100  # 0.6 s at 200/s
    assert {r.outcome for r in after} == {"connect:ECONNREFUSED"}


def test_wrong_answers_and_silence_are_failures() -> None:
    port = free_port()
    with serve(port):  # POST / is not allowed: 405 for every POST
        result = run_cluster_load(
            ClusterLoadConfig("127.0.0.1", port, rate=100, conns=1, duration=0.3, post_path="/")
        )
    assert {r.outcome for r in result.select("POST")} == {"status:405"}
    assert {r.outcome for r in result.select("GET")} == {"ok"}

    with socket.create_server(("127.0.0.1", 0)) as liar:  # 200 with the same body always
        threading.Thread(target=answer_wrongly, args=(liar,), daemon=True).start()
        config = ClusterLoadConfig("127.0.0.1", liar.getsockname()[1], rate=100, duration=0.2)
        result = run_cluster_load(config)
    assert {r.outcome for r in result.select("POST")} == {"body"}
    assert {r.outcome for r in result.select("GET")} == {"ok"}

    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts (backlog), never answers
        port = silent.getsockname()[1]
        config = ClusterLoadConfig(
            "127.0.0.1", port, rate=30, conns=3, duration=0.1, request_timeout=0.3,
            connect_timeout=0.3,
        )  # fmt: skip
        started = time.monotonic()
        result = run_cluster_load(config)
    assert [r.outcome for r in result.records] == ["timeout"] * 3
    assert all(0.29 <= r.done - r.sent <= 0.6 for r in result.records)
    assert time.monotonic() - started < 2.0


def test_the_command_line_announces_its_start_and_writes_every_request(tmp_path: Path) -> None:
    port = free_port()
    out = tmp_path / "load.json"
    with serve(port):
        done = subprocess.run(
            [sys.executable, "-m", "ioreactor_tools.bench.cluster_load",
             f"http://127.0.0.1:{port}", "--rate", "100", "--conns", "2",
             "--duration", "0.5", "--out", str(out)],
            capture_output=True, text=True, timeout=30, check=True,
        )  # fmt: skip
    first, summary = done.stdout.splitlines()
    assert first.startswith("start ") and float(first.split()[1]) > 0
    assert "0 failed" in summary
    result = ClusterLoadResult.from_json(json.loads(out.read_text()))
    assert len(result.records) >= 48 and result.failed() == []
    assert isinstance(result.records[0], Record)


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError):
        parse_target("https://example:443")
    assert parse_target("http://10.200.0.2") == ("10.200.0.2", 80)
    with pytest.raises(ValueError):
        ClusterLoadConfig("h", 1, conns=0)
    with pytest.raises(ValueError):
        ClusterLoadConfig("h", 1, body_size=8)
    done = subprocess.run(
        [sys.executable, "-m", "ioreactor_tools.bench.cluster_load", "ftp://x", "--rate", "1"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert done.returncode == 2 and "expected http://HOST[:PORT]" in done.stderr


def test_in_flight_at_a_moment() -> None:
    config = ClusterLoadConfig("h", 1)
    result = ClusterLoadResult(
        config, 0.0, 3.0,
        [Record("GET", 0.0, 1.0, "ok"), Record("POST", 0.5, 2.0, "closed:eof"),
         Record("GET", 1.5, 2.5, "ok")],
    )  # fmt: skip
    assert [r.method for r in result.in_flight_at(0.9)] == ["GET", "POST"]
    assert result.failed("POST") == [result.records[1]]
    assert result.outcomes() == {"closed:eof": 1, "ok": 2}
    assert "3 requests" in result.summary() and "1 failed (closed:eof 1)" in result.summary()
