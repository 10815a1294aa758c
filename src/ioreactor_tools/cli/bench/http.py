"""`ioreactor bench http`: the HTTP server against minimal asyncio/uvloop+httptools peers
and nginx.

For each connection count, each server in turn runs alone, pinned to the server core,
while the load (wrk when installed, else ioreactor's own generator) runs on the load
core: keep-alive ``GET /``, ``--pipeline`` requests per write. The server's process-tree
CPU time is read from ``/proc`` right before and after the measured window (after a
warm-up on the same connections), so ``CPU µs/req`` is server CPU over exactly the
requests counted. All servers run in one invocation: their ratios compare like with like.
On a shared machine one window's ratio moves by tenths: ``--rounds N`` repeats the whole
cycle N times (servers interleaved, so a busy spell hits them alike), shows each server's
median round and judges the targets by the median of the per-round ratios. Prints the
table, the targets, and writes JSON (every round) and a PNG (req/s and CPU µs/req
against connections). A requested server that cannot run here (uvloop or aiohttp not
installed, no nginx) is named with what it needs, when the run starts and again with the
verdicts.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ioreactor.cli.arguments import (
    count_list,
    names_from,
    positive_count,
)
from ioreactor_tools.cli.bench._args import (
    add_out_option,
    add_poller_option,
    add_rounds_option,
    add_window_options,
    config_from_args,
    rerun_command,
    run_comparison,
)

if TYPE_CHECKING:
    from rich.console import Console

    from ioreactor_tools.bench.report import BenchResult

#: Seconds of unmeasured traffic on the same connections before each window.
WARMUP = 1.0
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


def load_kind(requested: str) -> str:
    """``wrk`` or ``ioreactor``: ``auto`` picks wrk when it is installed."""
    from ioreactor_tools.bench.http_load import load_kind, wrk_path

    if requested == "wrk" and wrk_path() is None:
        raise SystemExit("ioreactor bench http: --load wrk, but wrk is not installed")
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


def line_plot(results: Sequence[BenchResult], path: Path, title: str) -> Path | None:
    """req/s and CPU µs/req against connections, one line per server; None without
    matplotlib."""
    import importlib.util

    if importlib.util.find_spec("matplotlib") is None or not results:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (rate_ax, cpu_ax) = plt.subplots(1, 2, figsize=(11, 4.5))
    for server in dict.fromkeys(r.name for r in results):
        rows = sorted((r for r in results if r.name == server), key=lambda r: r.conns)
        xs = [r.conns for r in rows]
        rate_ax.plot(xs, [r.ops_per_s for r in rows], marker="o", label=server)
        cpu_ax.plot(xs, [r.cpu_us_per_op for r in rows], marker="o", label=server)
    for ax, label in (
        (rate_ax, "requests/s (higher is better)"),
        (cpu_ax, "server CPU µs per request (lower is better)"),
    ):
        ax.set_xscale("log")
        ax.set_xlabel("connections")
        ax.set_ylabel(label)
        ax.set_xticks(sorted({r.conns for r in results}))
        ax.get_xaxis().set_major_formatter(
            matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:,.0f}")
        )
        ax.grid(True, alpha=0.3)
        ax.legend()
    cpu_ax.set_ylim(bottom=0)
    rate_ax.set_ylim(bottom=0)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "http",
        help="HTTP keep-alive GET /: ioreactor vs asyncio/uvloop+httptools and nginx, "
        "CPU µs per request",
        description="Runs each HTTP server pinned to one core with the load (wrk if installed, "
        "else ioreactor's own generator) on another, reads the server's CPU time from /proc "
        "around a fixed window, and prints CPU µs per request, req/s, latency and RSS with "
        "the ratio to each peer; writes JSON and a PNG.",
    )
    p.add_argument(
        "--conns",
        type=count_list,
        default=None,
        help="e.g. 100,1000,10000 (default: that, or 256 with --pipeline > 1)",
    )
    add_window_options(p, duration=10.0, warmup=WARMUP)
    p.add_argument(
        "--pipeline", type=positive_count, default=1, help="requests per write (default 1)"
    )
    add_poller_option(p, help="ioreactor's backend")
    p.add_argument(
        "--servers",
        type=names_from(HTTP_SERVERS, "server"),
        default=DEFAULT_SERVERS,
        help=f"comma-separated, of: {', '.join(HTTP_SERVERS)} "
        f"(default: {','.join(DEFAULT_SERVERS)})",
    )
    p.add_argument(
        "--load",
        choices=("auto", "wrk", "ioreactor"),
        default="auto",
        help="load generator (default: wrk when installed)",
    )
    add_rounds_option(
        p,
        "repeat the whole cycle; show each server's median round and judge the targets "
        "by the median per-round ratio (default 1; odd counts have a true median)",
    )
    add_out_option(p)
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def reproduce_command(config: HttpBenchConfig, load: str) -> str:
    options = [f"--pipeline {config.pipeline}", f"--load {load}"]
    if config.poller:
        options.append(f"--poller {config.poller}")
    if config.servers != DEFAULT_SERVERS:
        options.append(f"--servers {','.join(config.servers)}")
    return rerun_command("http", config, *options)


def run(args: argparse.Namespace) -> int:
    conns = args.conns or (PIPELINED_CONNS if args.pipeline > 1 else KEEPALIVE_CONNS)
    config = config_from_args(HttpBenchConfig, args, conns=conns)
    load = load_kind(config.load)
    skipped = skipped_servers(config.servers)
    return run_comparison(
        args,
        config,
        run_http_bench,
        stem="http",
        title=f"HTTP keep-alive GET /, {config.pipeline} request(s) per write, "
        f"{config.duration:g} s per server, load {load}",
        chart=line_plot,
        verdicts=lambda results: target_lines(results, config.pipeline, skipped),
        command=reproduce_command(config, load),
        peers=TABLE_PEERS,
    )
