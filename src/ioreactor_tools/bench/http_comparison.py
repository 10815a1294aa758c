"""``ioreactor bench http``: the HTTP server against minimal asyncio/uvloop+httptools
peers, aiohttp and nginx -- the servers, their commands, the run and the verdicts.

::

    HttpBenchConfig -> run_http_bench: every round, connection count and server
        -> HTTP_SERVERS[name](port, poller, scratch) -> measure_http_server
           (:mod:`ioreactor_tools.bench.http_bench`) -> [BenchResult, ...]
        -> target_lines: ioreactor's CPU per request against the targets

For each connection count, each server in turn runs alone, pinned to the server core,
while the load (wrk when installed, else ioreactor's own generator) runs on the load
core: keep-alive ``GET /``, ``pipeline`` requests per write. The server's process-tree
CPU time is read from ``/proc`` right before and after the measured window (after a
warm-up on the same connections), so CPU per request is server CPU over exactly the
requests counted. All servers run in one invocation: their ratios compare like with like.
On a shared machine one window's ratio moves by tenths: several rounds repeat the whole
cycle (servers interleaved, so a busy spell hits them alike) and the targets are judged
by the median of the per-round ratios. A requested server that cannot run here (uvloop or
aiohttp not installed, no nginx) is named with what it needs.

The measurement of one server is :mod:`ioreactor_tools.bench.http_bench`, shared with
``bench aio``, ``asgi`` and ``wsgi``; this module is the comparison ``bench http`` runs.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ioreactor_tools.bench.pinning import WARMUP

if TYPE_CHECKING:
    from rich.console import Console

    from ioreactor_tools.bench.report import BenchResult

#: Default connection counts: keep-alive, and pipelined.
KEEPALIVE_CONNS = (100, 1000, 10_000)
PIPELINED_CONNS = (256,)
#: The targets: ioreactor's CPU per request over uvloop's and over nginx's (keep-alive),
#: and the absolute CPU per request with 16 pipelined requests per write.
UVLOOP_RATIO_TARGET = 1.0
NGINX_RATIO_TARGET = 1.0
KEEPALIVE_TARGETS = (("uvloop", UVLOOP_RATIO_TARGET), ("nginx", NGINX_RATIO_TARGET))
PIPELINED_CPU_TARGET_US = 1.0
#: With metrics on (``--servers ioreactor,ioreactor-metrics``): at most this much more
#: CPU per request than without, in the same round.
METRICS_RATIO_TARGET = 1.05


def ioreactor_command(port: int, poller: str | None) -> list[str]:
    command = [
        sys.executable,
        "-m",
        "ioreactor",
        "serve",
        "--workers",
        "0",
        "--listen",
        f"127.0.0.1:{port}",
        # the peers never close a connection or time one out: neither do we, here (a
        # ramp-up of 10,000 connections on a busy machine outlasts the header timeout)
        "--max-requests-per-connection",
        str(10**9),
        "--keepalive-timeout",
        "3600",
        "--header-timeout",
        "3600",
    ]
    return [*command, "--poller", poller] if poller else command


def ioreactor_metrics_command(port: int, poller: str | None) -> list[str]:
    """``ioreactor serve`` keeping Prometheus metrics (``--metrics-listen``): against
    ``ioreactor`` in the same run, what metrics cost per request."""
    from ioreactor.testing import free_port

    metrics = ["--metrics-listen", f"127.0.0.1:{free_port()}"]
    return [*ioreactor_command(port, poller), *metrics]


#: The command that starts a server on (port, poller, scratch directory): the peers
#: ignore the poller; nginx writes its configuration and files into the directory, which
#: lives as long as that one server's run.
ServerCommand = Callable[[int, str | None, Path], list[str]]


def _ioreactor(metrics: bool) -> ServerCommand:
    def command(port: int, poller: str | None, scratch: Path) -> list[str]:
        if metrics:
            return ioreactor_metrics_command(port, poller)
        return ioreactor_command(port, poller)

    return command


def _peer(name: str) -> ServerCommand:
    def command(port: int, poller: str | None, scratch: Path) -> list[str]:
        from ioreactor_tools.bench.http_peers import http_peer_command

        return http_peer_command(name, port)

    return command


def nginx_command(port: int, poller: str | None, scratch: Path) -> list[str]:
    """nginx, one process, ``return 200 "Hello, World!"``
    (:mod:`ioreactor_tools.bench.nginx_peers`), its files in ``scratch``."""
    from ioreactor_tools.bench.nginx_peers import nginx_command as command

    return command(scratch, port)


#: Server name -> the command that starts it.
HTTP_SERVERS: dict[str, ServerCommand] = {
    "ioreactor": _ioreactor(metrics=False),
    "ioreactor-metrics": _ioreactor(metrics=True),
    "asyncio": _peer("asyncio-http"),
    "uvloop": _peer("uvloop-http"),
    "aiohttp": _peer("aiohttp-http"),
    "nginx": nginx_command,
}
DEFAULT_SERVERS = ("ioreactor", "asyncio", "uvloop", "aiohttp")
#: The peers a table shows ratios against, where they ran.
TABLE_PEERS = ("asyncio", "uvloop", "nginx")


@dataclass(frozen=True)
class HttpBenchConfig:
    conns: tuple[int, ...] = KEEPALIVE_CONNS
    duration: float = 10.0
    warmup: float = WARMUP
    pipeline: int = 1
    poller: str | None = None
    servers: tuple[str, ...] = DEFAULT_SERVERS
    load: str = "auto"
    rounds: int = 1


def server_unavailable(name: str) -> str | None:
    """None if server ``name`` can run here, else what it needs."""
    from ioreactor_tools.bench.http_peers import unavailable
    from ioreactor_tools.bench.nginx_peers import nginx_unavailable

    if name.startswith("ioreactor"):
        return None
    if name == "nginx":
        return nginx_unavailable()
    return unavailable(f"{name}-http")


def skipped_servers(servers: Sequence[str]) -> dict[str, str]:
    """The requested servers that cannot run here, each with what it needs."""
    return {name: reason for name in servers if (reason := server_unavailable(name)) is not None}


class WrkMissing(RuntimeError):
    """``wrk`` was asked for as the load, and it is not installed here."""


def load_kind(requested: str) -> str:
    """``wrk`` or ``ioreactor``: ``auto`` picks wrk when it is installed; :class:`WrkMissing`
    for ``wrk`` when it is not."""
    from ioreactor_tools.bench.http_load import load_kind, wrk_path

    if requested == "wrk" and wrk_path() is None:
        raise WrkMissing("wrk is not installed")
    return load_kind(requested)


def run_http_bench(
    config: HttpBenchConfig, *, console: Console, progress: bool = False
) -> list[BenchResult]:
    """Every server at every connection count, in one run; the load pins this process."""
    from ioreactor.testing import free_port
    from ioreactor_tools.bench.http_bench import measure_http_server
    from ioreactor_tools.bench.pinning import core_plan, pin_current_process
    from ioreactor_tools.bench.rounds import run_server_rounds

    plan = core_plan()
    load = load_kind(config.load)
    pin_current_process(plan.load)

    def measure(name: str, conns: int) -> BenchResult:
        port = free_port()
        with tempfile.TemporaryDirectory(prefix=f"ioreactor-bench-{name}-") as scratch:
            return measure_http_server(
                name,
                HTTP_SERVERS[name](port, config.poller, Path(scratch)),
                port,
                conns,
                plan,
                duration=config.duration,
                warmup=config.warmup,
                load=load,
                pipeline=config.pipeline,
                poller=config.poller,
                progress=progress,
            )

    return run_server_rounds(
        config,
        unavailable=server_unavailable,
        measure=measure,
        console=console,
        detail=f", pipeline {config.pipeline}, load {load}",
    )


def _verdict(where: str, what: str, values: Sequence[float], target: str, unit: str) -> str:
    """``where: what MEDIAN (meets|MISSES the target <= T)``, each round's figure after."""
    import statistics

    value = statistics.median(values)
    verdict = "meets" if value <= float(target) else "MISSES"
    # Three decimals: at two, a ratio of 1.004 would read "1.00 (MISSES the target <= 1)".
    rounds = f" (rounds: {', '.join(f'{v:.2f}' for v in values)})" if len(values) > 1 else ""
    return f"{where}: {what} {value:.3f}{unit} ({verdict} the target <= {target}{unit}){rounds}"


def target_lines(
    results: Sequence[BenchResult], pipeline: int, unavailable: Mapping[str, str] | None = None
) -> list[str]:
    """One verdict per connection count and peer against the issue's targets; with several
    rounds, the median of the rounds (each round's figure in brackets). A requested server
    in ``unavailable`` gets a line saying it was not measured, and why."""
    import statistics

    from ioreactor_tools.bench.report import round_ratios

    lines = []
    for conns in dict.fromkeys(r.conns for r in results if r.name == "ioreactor"):
        if pipeline == 1:
            for peer, target in KEEPALIVE_TARGETS:
                values = round_ratios(results, "ioreactor", conns, peer)
                if values:
                    what = f"ioreactor / {peer} CPU per request ="
                    lines.append(_verdict(f"{conns:,} conns", what, values, f"{target:.2f}", ""))
        else:
            values = [
                r.cpu_us_per_op for r in results if r.name == "ioreactor" and r.conns == conns
            ]
            where = f"{conns:,} conns, {pipeline} pipelined"
            what = "ioreactor µs CPU per request ="
            limit = f"{PIPELINED_CPU_TARGET_US:g}"
            lines.append(_verdict(where, what, values, limit, " µs"))
    for conns in dict.fromkeys(r.conns for r in results if r.name == "ioreactor-metrics"):
        values = round_ratios(results, "ioreactor-metrics", conns, "ioreactor")
        if values:
            value = statistics.median(values)
            verdict = "meets" if value <= METRICS_RATIO_TARGET else "MISSES"
            each = ", ".join(f"{v:.3f}" for v in values)
            lines.append(
                f"{conns:,} conns: CPU per request with metrics / without = {value:.3f} "
                f"({verdict} the target <= {METRICS_RATIO_TARGET:.2f}) (rounds: {each})"
            )
    for name, reason in (unavailable or {}).items():
        lines.append(f"{name}: NOT MEASURED: {reason}")
    return lines
