"""The HTTP benchmark's parts, briefly: the load generator against a live server, the
minimal peers, and the parsing of wrk's report (wrk itself is not installed by tests)."""

from __future__ import annotations

import math
import socket
import subprocess
import time

import pytest
from http_support import live_server

from ioreactor.http.limits import Limits
from ioreactor.testing import free_port
from ioreactor_tools.bench.http_load import HttpLoadConfig, parse_wrk_output, run_http_load
from ioreactor_tools.bench.http_peers import http_peer_command, unavailable
from ioreactor_tools.bench.pinning import wait_for_port
from support.cli_process import run_cli
from support.http import raw_exchange


@pytest.mark.parametrize("pipeline", [1, 8])
def test_load_generator_counts_requests_and_latency(pipeline: int) -> None:
    with live_server(limits=Limits(max_requests_per_connection=10**9)) as (_, server):
        marks: list[str] = []
        result = run_http_load(
            HttpLoadConfig(
                "127.0.0.1", server.port, conns=4, duration=0.3, warmup=0.1, pipeline=pipeline
            ),
            on_start=lambda: marks.append("start"),
            on_end=lambda: marks.append("end"),
        )
    assert marks == ["start", "end"]
    assert result.connected == 4 and result.errors == {}
    assert result.requests > 0
    assert 0 < result.latency_us(0.5) <= result.latency_us(0.99)


def test_load_generator_reports_non_2xx() -> None:
    with live_server() as (_, server):
        result = run_http_load(
            HttpLoadConfig("127.0.0.1", server.port, conns=2, duration=0.2, warmup=0, path="/x")
        )
    assert result.requests == 0
    assert result.errors.get("status:404", 0) > 0


@pytest.mark.parametrize("peer", ["asyncio-http", "uvloop-http"])
def test_peers_answer_keep_alive_and_close(peer: str) -> None:
    if (reason := unavailable(peer)) is not None:
        pytest.skip(reason)
    port = free_port()
    proc = subprocess.Popen(http_peer_command(peer, port), stderr=subprocess.DEVNULL)
    try:
        wait_for_port("127.0.0.1", port, 20, proc)
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n" * 2)
            data = b""
            deadline = time.monotonic() + 10
            while data.count(b"Hello, World!") < 2 and time.monotonic() < deadline:
                data += sock.recv(4096)
            assert data.count(b"HTTP/1.1 200 OK") == 2
        data, closed = raw_exchange(port, b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        assert data.endswith(b"Hello, World!") and closed
    finally:
        proc.terminate()
        proc.wait(10)


WRK_OUTPUT = """Running 10s test @ http://127.0.0.1:8080/
  1 threads and 100 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.20ms  300.00us   9.87ms   90.00%
    Req/Sec    80.12k     2.00k   85.00k    70.00%
  Latency Distribution
     50%  812.00us
     75%    1.10ms
     90%    1.50ms
     99%    3.21ms
  801234 requests in 10.00s, 98.76MB read
  Socket errors: connect 0, read 3, write 0, timeout 1
  Non-2xx or 3xx responses: 5
Requests/sec:  80123.40
Transfer/sec:      9.88MB
"""


def test_parse_wrk_output() -> None:
    result = parse_wrk_output(WRK_OUTPUT)
    assert (result.requests, result.duration) == (801234, 10.0)
    assert (result.p50_us, result.p99_us) == (812.0, 3210.0)
    assert result.errors == {"wrk:read": 3, "wrk:timeout": 1, "status:non-2xx": 5}
    with pytest.raises(ValueError):
        parse_wrk_output("garbage")
    pipelined = parse_wrk_output(WRK_OUTPUT.replace("3.21ms", "0.00us"))
    assert math.isnan(pipelined.p99_us)  # wrk prints 0 there when pipelining


def test_bench_http_command_parses() -> None:
    out = run_cli("bench", "http", "--help", timeout=60)
    assert out.returncode == 0 and "--pipeline" in out.stdout and "--load" in out.stdout
