"""What the TCP load generators share: results merged across processes, connections split
over processes, config checks, error keys, and the multi-process runner on real processes."""

from __future__ import annotations

import errno
import sys
from typing import Any

import pytest

from ioreactor.testing import free_port
from ioreactor_tools.bench.echo_load import EchoLoadConfig, EchoLoadResult, run_echo_load
from ioreactor_tools.bench.http_load import HttpLoadConfig, HttpLoadResult, run_http_load
from ioreactor_tools.bench.latency import LatencyHistogram
from ioreactor_tools.bench.pinning import ServerProcess
from ioreactor_tools.bench.tcp_load import errno_kind, split_conns


def histogram(*values_ns: int) -> LatencyHistogram:
    latency = LatencyHistogram()
    for value in values_ns:
        latency.record(value)
    return latency


def echo_part(messages: int, duration: float, errors: dict[str, int]) -> EchoLoadResult:
    return EchoLoadResult(
        conns=6,
        connected=5,
        messages=messages,
        bytes=messages * 100,
        duration=duration,
        latency=histogram(*[1000 * (i + 1) for i in range(messages)]),
        errors=errors,
    )


def test_merge_adds_counts_takes_the_longest_window_and_combines_the_rest() -> None:
    parts = [
        echo_part(3, 1.0, {"closed:eof": 1, "integrity": 2}),
        echo_part(4, 1.5, {"integrity": 1}),
    ]
    merged = EchoLoadResult.merge(parts)
    assert (merged.conns, merged.connected, merged.procs) == (12, 10, 2)
    assert (merged.messages, merged.bytes) == (7, 700)
    assert merged.duration == 1.5
    assert merged.latency.count == 7 and merged.latency.max == 4000
    assert merged.errors == {"closed:eof": 1, "integrity": 3}
    assert merged.error_count == 4
    assert merged.messages_per_s == 7 / 1.5
    assert parts[0].errors == {"closed:eof": 1, "integrity": 2}  # the parts are untouched

    http = HttpLoadResult.merge(
        [
            HttpLoadResult(conns=2, connected=2, requests=10, duration=2.0, latency=histogram(5)),
            HttpLoadResult(conns=1, connected=0, requests=0, duration=0.0, latency=histogram()),
        ]
    )
    assert (http.conns, http.connected, http.requests, http.procs) == (3, 2, 10, 2)
    assert http.requests_per_s == 5.0 and http.latency.count == 1


def test_summary_keeps_each_generators_words() -> None:
    echo = echo_part(3, 2.0, {"integrity": 1, "closed:eof": 2})
    assert echo.summary() == (
        "5/6 connections, 3 messages in 2.00 s = 2 msg/s; latency µs "
        f"p50 {echo.latency_us(0.5):,.0f} p99 {echo.latency_us(0.99):,.0f} "
        f"p99.9 {echo.latency_us(0.999):,.0f} max 3; errors: closed:eof 2, integrity 1"
    )
    http = HttpLoadResult(
        conns=2000, connected=2000, requests=12345, duration=1.0, latency=histogram()
    )
    assert http.summary() == (
        "2,000/2,000 connections, 12,345 requests in 1.00 s = 12,345 req/s; "
        "latency µs p50 0 p99 0 max 0; errors: none"
    )


def test_connections_split_evenly_and_each_process_gets_its_share() -> None:
    assert split_conns(11, 2) == [6, 5]
    assert split_conns(5, 5) == [1] * 5
    assert sum(split_conns(20_000, 3)) == 20_000
    echo = EchoLoadConfig(host="127.0.0.1", port=1, conns=11, procs=2, seed=7)
    shares = [echo.for_process(i, n) for i, n in enumerate(split_conns(11, 2))]
    assert [(s.conns, s.procs, s.seed) for s in shares] == [(6, 1, 7), (5, 1, 8)]
    unseeded = EchoLoadConfig(host="127.0.0.1", port=1, conns=2, procs=2)
    assert unseeded.for_process(1, 1).seed is None
    http = HttpLoadConfig(host="127.0.0.1", port=1, conns=3, procs=2, path="/x")
    assert http.for_process(0, 2) == HttpLoadConfig(host="127.0.0.1", port=1, conns=2, path="/x")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"conns": 2, "procs": 3}, "procs"),
        ({"pipeline": 0}, "pipeline"),
        ({"ramp_batch": 0}, "ramp_batch"),
        ({"duration": 0}, "duration"),
        ({"warmup": -1}, "warmup"),
    ],
)
def test_invalid_configs_are_refused(changes: dict[str, Any], message: str) -> None:
    for config_type in (EchoLoadConfig, HttpLoadConfig):
        with pytest.raises(ValueError, match=message):
            config_type(host="127.0.0.1", port=1, **changes)


def test_errno_kind_names_the_errno_the_exception_or_eof() -> None:
    refused = ConnectionRefusedError(errno.ECONNREFUSED, "refused")
    assert errno_kind("connect", refused) == "connect:ECONNREFUSED"
    assert errno_kind("closed", OSError(99999, "odd")) == "closed:99999"
    assert errno_kind("closed", ValueError("x")) == "closed:ValueError"
    assert errno_kind("closed", None) == "closed:eof"


def test_a_failing_load_process_fails_the_run() -> None:
    config = EchoLoadConfig(
        host="127.0.0.1", port=free_port(), conns=2, procs=2, duration=0.2, poller="no-such"
    )
    with pytest.raises(RuntimeError, match=r"a load process failed: .*no-such"):
        run_echo_load(config)


def test_http_load_in_two_processes_merges_and_brackets_the_window() -> None:
    port = free_port()
    command = [sys.executable, "-m", "ioreactor", "serve", "--workers", "0"]
    command += ["--listen", f"127.0.0.1:{port}", "--max-requests-per-connection", "1000000000"]
    marks: list[str] = []
    with ServerProcess(command, port=port):
        result = run_http_load(
            HttpLoadConfig(host="127.0.0.1", port=port, conns=5, procs=2, duration=0.4, warmup=0.1),
            on_start=lambda: marks.append("start"),
            on_end=lambda: marks.append("end"),
        )
    assert marks == ["start", "end"]
    assert (result.procs, result.conns, result.connected) == (2, 5, 5)
    assert result.errors == {}
    assert result.requests > 0
    assert result.latency.count == result.requests  # one latency per counted request
    assert result.duration >= 0.4
