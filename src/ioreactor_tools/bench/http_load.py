"""The HTTP load generator of ``ioreactor bench http``, built on ioreactor's own loop.

Each connection keeps ``pipeline`` requests in flight: it writes them in one send (one
request when ``pipeline`` is 1: plain keep-alive ping-pong), parses the responses with
httptools, records each request's latency from that write to its response, and writes
the next batch once all of them are answered. A response that is not 2xx counts as a
``status:NNN`` error, a malformed one as ``parse``, a connection the server closes as
``closed:...``.

The phases (ramp-up in batches, an unmeasured warm-up, the window bracketed by
``on_start``/``on_end`` where the benchmark reads the server's CPU, the drain) and
``procs > 1`` (each process has its own fd limit: 20,000 connections need two) are
:mod:`ioreactor_tools.bench.tcp_load`'s. Requests *sent* in the window and answered are counted.

:func:`run_wrk` drives the same workload with wrk instead, when it is installed.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

import httptools

from ioreactor.net.buffer import Buffer
from ioreactor.net.connection import TcpConnection
from ioreactor_tools.bench.tcp_load import (
    DRAIN,
    MEASURE,
    PROCESS_SLACK,
    WARMUP,
    ProgressView,
    TcpLoad,
    TcpLoadConfig,
    TcpLoadResult,
    run_load,
)


@dataclass(frozen=True)
class HttpLoadConfig(TcpLoadConfig):
    warmup: float = 1.0
    path: str = "/"

    def request_bytes(self) -> bytes:
        """``pipeline`` GET requests, as wrk writes them."""
        one = f"GET {self.path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n\r\n".encode()
        return one * self.pipeline


@dataclass(kw_only=True)
class HttpLoadResult(TcpLoadResult):
    """What the load saw: ``requests`` sent in the window and answered 2xx."""

    requests: int

    NOUN: ClassVar[str] = "requests"
    RATE_UNIT: ClassVar[str] = "req/s"

    requests_per_s = TcpLoadResult.rate


class _Exchange:
    """One connection's responses: the httptools callbacks and the batch in flight."""

    __slots__ = ("conn", "load", "outstanding", "parser", "sent_ns")

    def __init__(self, load: HttpLoad, conn: TcpConnection) -> None:
        self.load = load
        self.conn = conn
        self.parser = httptools.HttpResponseParser(self)
        self.outstanding = 0
        self.sent_ns = 0

    def on_message_complete(self) -> None:
        self.outstanding -= 1
        self.load.answered(self, self.parser.get_status_code())


class HttpLoad(TcpLoad[HttpLoadConfig, HttpLoadResult]):
    """One process's share of the HTTP load: ``config.conns`` connections on one loop."""

    def __init__(self, config: HttpLoadConfig) -> None:
        super().__init__(config, name="http-load")
        self.batch = config.request_bytes()

    def _new_context(self, conn: TcpConnection) -> _Exchange:
        return _Exchange(self, conn)

    def _start_sending(self, conn: TcpConnection) -> None:
        self._send_batch(conn.context)

    def _in_flight(self, context: _Exchange) -> int:
        return context.outstanding

    def _result(self) -> HttpLoadResult:
        return HttpLoadResult(
            conns=self.config.conns,
            connected=self.connected,
            requests=self.exchanges,
            duration=self.window,
            latency=self.latency,
            errors=dict(self.errors),
        )

    def _send_batch(self, exchange: _Exchange) -> None:
        exchange.outstanding = self.config.pipeline
        self.outstanding += self.config.pipeline
        exchange.sent_ns = self._perf_ns()
        exchange.conn.send(self.batch)

    def answered(self, exchange: _Exchange, status: int) -> None:
        self.outstanding -= 1
        phase = self.phase
        if not 200 <= status < 300:
            self.errors[f"status:{status}"] += 1
        elif phase in (MEASURE, DRAIN):
            sent_ns = exchange.sent_ns
            self._record(self._perf_ns() - sent_ns)
            if sent_ns >= self._window_start:
                self.exchanges += 1
        if exchange.outstanding:
            return
        if phase in (MEASURE, WARMUP):
            self._send_batch(exchange)
        elif not self.outstanding:
            self.loop.stop()

    def on_message(self, conn: TcpConnection, buffer: Buffer) -> None:
        exchange: _Exchange = conn.context
        try:
            with buffer.peek() as data:
                exchange.parser.feed_data(data)
        except httptools.HttpParserError:
            self._drop(conn, buffer, "parse")
            return
        buffer.retrieve_all()


def run_http_load(
    config: HttpLoadConfig,
    *,
    on_start: Callable[[], object] | None = None,
    on_end: Callable[[], object] | None = None,
    progress: bool = False,
) -> HttpLoadResult:
    """Run the load of ``config``; ``on_start``/``on_end`` bracket the measured window."""
    view = ProgressView(config.duration, "http load", "req") if progress else None
    return run_load(HttpLoad, config, on_start=on_start, on_end=on_end, view=view)


# -- wrk, when it is installed ---------------------------------------------------------------

#: wrk script that writes ``depth`` requests per write (wrk counts each response).
WRK_PIPELINE_SCRIPT = """
init = function(args)
  local depth = tonumber(args[1]) or 1
  local r = {}
  for i = 1, depth do r[i] = wrk.format(nil, "%s") end
  req = table.concat(r)
end
request = function() return req end
"""

_WRK_UNITS = {"us": 1.0, "ms": 1e3, "s": 1e6, "m": 60e6}


@dataclass
class WrkResult:
    """What wrk reported for one run."""

    requests: int
    duration: float
    p50_us: float
    p99_us: float
    errors: dict[str, int] = field(default_factory=dict)

    RATE_UNIT: ClassVar[str] = "req/s"

    @property
    def count(self) -> int:
        return self.requests

    def latency_us(self, q: float) -> float:
        """The latency wrk reported at quantile ``q`` (0.5 or 0.99; NaN for any other)."""
        return {0.5: self.p50_us, 0.99: self.p99_us}.get(q, float("nan"))


def wrk_path() -> str | None:
    """The wrk executable, or None when it is not installed."""
    return shutil.which("wrk")


def load_kind(requested: str) -> str:
    """``wrk`` or ``ioreactor`` for a ``--load`` choice: ``auto`` picks wrk when it is
    installed."""
    if requested == "auto":
        return "wrk" if wrk_path() is not None else "ioreactor"
    return requested


def _wrk_latency_us(text: str) -> float:
    match = re.fullmatch(r"([0-9.]+)(us|ms|s|m)", text)
    if match is None:
        raise ValueError(f"unrecognised wrk latency {text!r}")
    return float(match.group(1)) * _WRK_UNITS[match.group(2)]


def parse_wrk_output(output: str) -> WrkResult:
    """Requests, duration, p50/p99 and errors from ``wrk --latency`` output."""
    total = re.search(r"(\d+) requests in ([0-9.]+)(us|ms|s|m)", output)
    if total is None:
        raise ValueError(f"no request count in wrk output:\n{output}")
    requests = int(total.group(1))
    duration = _wrk_latency_us(total.group(2) + total.group(3)) / 1e6
    percentiles = dict(re.findall(r"^\s+(50|99)%\s+([0-9.]+(?:us|ms|s|m))\s*$", output, re.M))
    errors: dict[str, int] = {}
    socket_errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    if socket_errors is not None:
        for kind, count in zip(
            ("connect", "read", "write", "timeout"), socket_errors.groups(), strict=True
        ):
            if int(count):
                errors[f"wrk:{kind}"] = int(count)
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if non_2xx is not None:
        errors["status:non-2xx"] = int(non_2xx.group(1))
    return WrkResult(
        requests=requests,
        duration=duration,
        p50_us=_percentile(percentiles, "50"),
        p99_us=_percentile(percentiles, "99"),
        errors=errors,
    )


def _percentile(percentiles: dict[str, str], name: str) -> float:
    """A wrk percentile in µs; NaN when missing or 0 (wrk's histogram reports 0 for the
    upper percentiles when pipelining, which is not a latency)."""
    value = _wrk_latency_us(percentiles[name]) if name in percentiles else 0.0
    return value if value > 0 else float("nan")


def run_wrk(
    config: HttpLoadConfig,
    *,
    core: int | None = None,
    on_start: Callable[[], object] | None = None,
    on_end: Callable[[], object] | None = None,
) -> WrkResult:
    """Drive the server with wrk (one thread, pinned to ``core``): a warm-up run, then the
    measured run bracketed by ``on_start``/``on_end``."""
    wrk = wrk_path()
    if wrk is None:
        raise RuntimeError("wrk is not installed")
    url = f"http://{config.host}:{config.port}{config.path}"
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(WRK_PIPELINE_SCRIPT % config.path)
    try:

        def command(seconds: float) -> list[str]:
            argv = [wrk, "-t1", f"-c{config.conns}", f"-d{max(1, round(seconds))}s", "--latency"]
            argv += ["--timeout", "10s", "-s", script.name, url, "--", str(config.pipeline)]
            return ["taskset", "-c", str(core), *argv] if core is not None else argv

        limit = PROCESS_SLACK + config.warmup + config.duration
        if config.warmup > 0:
            subprocess.run(command(config.warmup), capture_output=True, timeout=limit, check=True)
        if on_start is not None:
            on_start()
        done = subprocess.run(
            command(config.duration), capture_output=True, text=True, timeout=limit, check=True
        )
        if on_end is not None:
            on_end()
    finally:
        os.unlink(script.name)
    return parse_wrk_output(done.stdout)
