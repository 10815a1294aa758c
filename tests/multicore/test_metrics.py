"""Prometheus metrics of ``ioreactor serve --workers 2 --metrics-listen``: every worker's
counters added up at a scrape, a killed worker's counters kept, parsed by
prometheus_client's own parser. Without --metrics-listen nothing observes a request."""

from __future__ import annotations

import http.client
import os
import signal
import socket
import time
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from ioreactor.http.app import App
from ioreactor.http.app_loader import ServeOptions
from ioreactor.http.dispatch import AppDispatcher
from ioreactor.http.handler import HttpHandler
from ioreactor.http.limits import Limits
from ioreactor.http.metrics import CountingDispatcher
from ioreactor.multicore.metrics import FLUSH_INTERVAL
from ioreactor.testing import wait_until
from support.cli_process import TIMEOUT, start_serve


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(url, timeout=TIMEOUT) as reply:
        assert reply.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = reply.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def requests(seen: dict[tuple[str, tuple[tuple[str, str], ...]], float]) -> float:
    """Every answered request, all methods and statuses."""
    return sum(v for (name, _), v in seen.items() if name == "ioreactor_http_requests_total")


def send(port: int, method: str, path: str, n: int, body: bytes | None = None) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
    for _ in range(n):
        conn.request(method, path, body=body)
        conn.getresponse().read()
    conn.close()


@pytest.mark.timeout(60)
def test_metrics_of_every_worker_are_added_up_and_kept_when_one_dies(tmp_path: Path) -> None:
    server, port = start_serve(
        tmp_path, "--workers", "2", "--metrics-listen", "127.0.0.1:0", "--header-timeout", "0.5"
    )
    with server:
        url = server.wait_for(r"metrics on (http://127\.0\.0\.1:\d+/metrics)").group(1)
        for _ in range(6):  # several connections: both workers take some (reuseport)
            send(port, "GET", "/", 5)
        send(port, "POST", "/echo", 5, body=b"x" * 100)
        send(port, "GET", "/nope", 3)
        silent = socket.create_connection(("127.0.0.1", port))  # sends nothing: timed out
        assert silent.recv(1) == b""
        silent.close()
        time.sleep(3 * FLUSH_INTERVAL)
        seen = scrape(url)
        assert requests(seen) == 38
        get_2xx = (("method", "GET"), ("status", "2xx"))
        assert seen[("ioreactor_http_requests_total", get_2xx)] == 30
        assert seen[("ioreactor_http_requests_total", (("method", "POST"), ("status", "2xx")))] == 5
        assert seen[("ioreactor_http_requests_total", (("method", "GET"), ("status", "4xx")))] == 3
        assert seen[("ioreactor_http_request_duration_seconds_count", ())] == 38
        assert seen[("ioreactor_http_request_duration_seconds_bucket", (("le", "+Inf"),))] == 38
        assert seen[("ioreactor_http_request_body_bytes_total", ())] == 500
        # Hello, World! 30 times, the echoed bodies, 404 Not Found\n 3 times.
        assert seen[("ioreactor_http_response_body_bytes_total", ())] == 30 * 13 + 500 + 3 * 14
        assert seen[("ioreactor_http_timeouts_total", (("kind", "header"),))] == 1
        assert seen[("ioreactor_connections_accepted_total", ())] == 9
        assert seen[("ioreactor_connections_closed_total", ())] == 9
        assert seen[("ioreactor_connections_open", ())] == 0
        assert seen[("ioreactor_loop_lag_seconds_count", ())] > 0
        assert seen[("ioreactor_workers", ())] == 2

        pids = [int(p) for p in server.wait_for(r"(?s)worker 0 \(pid (\d+)\) ready").groups()]
        os.kill(pids[0], signal.SIGKILL)
        server.wait_for(r"worker 0 restarted")
        assert wait_until(lambda: scrape(url)[("ioreactor_workers", ())] == 2)
        after = scrape(url)
        assert requests(after) == 38  # the dead one's kept
        assert after[("ioreactor_http_requests_total", get_2xx)] == 30
        for kept in (
            "ioreactor_http_request_duration_seconds_count",
            "ioreactor_http_request_duration_seconds_bucket",
            "ioreactor_http_request_duration_seconds_sum",
            "ioreactor_http_request_body_bytes_total",
            "ioreactor_http_response_body_bytes_total",
        ):
            labels = (("le", "+Inf"),) if kept.endswith("_bucket") else ()
            assert after[(kept, labels)] == seen[(kept, labels)], kept
        assert after[("ioreactor_worker_restarts_total", (("cause", "exit"),))] == 1
        assert after[("ioreactor_worker_restarts_total", (("cause", "reload"),))] == 0
        assert server.stop() == 0


def test_without_metrics_nothing_observes_a_request() -> None:
    """Zero work per request: the plain handler and the application's own dispatcher;
    --max-requests alone only counts."""
    handler = ServeOptions(Limits()).handler(AppDispatcher(App()))
    assert type(handler) is HttpHandler
    assert type(handler.dispatcher) is AppDispatcher
    assert handler.observer is None
    counting = ServeOptions(Limits(), count_requests=True).handler(AppDispatcher(App()))
    assert type(counting) is HttpHandler and counting.observer is None
    assert type(counting.dispatcher) is CountingDispatcher
