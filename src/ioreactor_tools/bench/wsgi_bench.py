"""``ioreactor bench wsgi``: WSGI applications on ioreactor against the WSGI servers people
deploy, and what a slowloris attack leaves of each one's throughput.

Throughput: for each application (Flask "hello", a Django JSON view) and connection
count, each server runs alone, pinned to the server core, one process with the same
thread count: ``ioreactor serve`` (``--workers 0 --threads N``), gunicorn ``-k gthread``
and ``-k sync`` (one worker), waitress and uvicorn's WSGI mode; wrk drives it from the
load core (keep-alive, one thread), and the server's CPU comes from ``/proc`` around the
measured window (:mod:`ioreactor_tools.bench.procstat`). The figure of merit is server
CPU µs per request, as a ratio to gunicorn gthread (the target is <= 0.6).

Slowloris: for ioreactor and gunicorn (sync and gthread), the normal keep-alive load
alone, then while :class:`~ioreactor_tools.bench.slowloris.Attack` holds ``slow``
connections that trickle a request head; the report is the attacked rate as a share of
the unattacked one (the target for ioreactor is >= 0.8).

Server processes run through :class:`~ioreactor_tools.bench.pinning.ServerProcess`
(their own process group, stopped and killed on the way out).
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ioreactor.testing import free_port
from ioreactor_tools.bench.http_bench import measure_http
from ioreactor_tools.bench.http_load import HttpLoadConfig, wrk_path
from ioreactor_tools.bench.pinning import (
    IOREACTOR_COMMAND,
    ServerProcess,
    core_plan,
    current_process_pinned,
)
from ioreactor_tools.bench.report import BenchResult
from ioreactor_tools.bench.slowloris import THROUGHPUT_TARGET, Attack, AttackConfig

#: The applications, as ``MODULE:ATTR`` of :mod:`ioreactor_tools.bench.wsgi_apps`.
APPS = {
    "flask": "ioreactor_tools.bench.wsgi_apps:flask_hello",
    "django": "ioreactor_tools.bench.wsgi_apps:django_json",
}
#: Server CPU per request against gunicorn gthread's, at most.
CPU_TARGET = 0.6
#: The peer the CPU ratio is taken against.
BASELINE = "gunicorn-gthread"
#: The header timeout ioreactor serves with (seconds: the server's default).
SLOW_HEADER_TIMEOUT = 10.0

Command = Callable[[int, str, int], list[str]]


def _ioreactor(port: int, spec: str, threads: int) -> list[str]:
    return [
        *IOREACTOR_COMMAND, "serve", spec,
        "--listen", f"127.0.0.1:{port}", "--workers", "0", "--threads", str(threads),
        "--max-requests", str(10**9), "--header-timeout", str(SLOW_HEADER_TIMEOUT),
    ]  # fmt: skip


def _gunicorn(kind: str) -> Command:
    def command(port: int, spec: str, threads: int) -> list[str]:
        argv = [sys.executable, "-m", "gunicorn", "-k", kind, "-w", "1"]
        argv += ["-b", f"127.0.0.1:{port}", "--log-level", "warning"]
        if kind == "gthread":
            argv += ["--threads", str(threads), "--keep-alive", "30"]
        return [*argv, spec]

    return command


def _waitress(port: int, spec: str, threads: int) -> list[str]:
    return [
        sys.executable, "-m", "waitress", f"--listen=127.0.0.1:{port}",
        f"--threads={threads}", "--connection-limit=20000", spec,
    ]  # fmt: skip


def _uvicorn(port: int, spec: str, threads: int) -> list[str]:
    return [
        sys.executable, "-m", "uvicorn", "--interface", "wsgi", "--host", "127.0.0.1",
        "--port", str(port), "--log-level", "warning", "--no-access-log", spec,
    ]  # fmt: skip


@dataclass(frozen=True)
class WsgiServer:
    name: str
    #: The Python module that must be importable to run it.
    module: str
    command: Command


SERVERS = {
    s.name: s
    for s in (
        WsgiServer("ioreactor", "ioreactor", _ioreactor),
        WsgiServer("gunicorn-gthread", "gunicorn", _gunicorn("gthread")),
        WsgiServer("gunicorn-sync", "gunicorn", _gunicorn("sync")),
        WsgiServer("waitress", "waitress", _waitress),
        WsgiServer("uvicorn-wsgi", "uvicorn", _uvicorn),
    )
}
#: The servers of the slowloris comparison.
SLOWLORIS_SERVERS = ("ioreactor", "gunicorn-sync", "gunicorn-gthread")


def missing_servers(names: Sequence[str]) -> list[str]:
    """The servers of ``names`` whose package is not installed."""
    return [n for n in names if importlib.util.find_spec(SERVERS[n].module) is None]


@dataclass(frozen=True)
class WsgiBenchConfig:
    apps: tuple[str, ...] = ("flask", "django")
    conns: tuple[int, ...] = (100, 1000)
    servers: tuple[str, ...] = tuple(SERVERS)
    threads: int = 8
    duration: float = 10.0
    warmup: float = 2.0
    slow: int = 1000
    slow_conns: int = 50
    slowloris: bool = True
    #: Seconds between two bytes of a slow connection's head (``bench slowloris``'s).
    interval: float = 2.0

    def __post_init__(self) -> None:
        unknown = [a for a in self.apps if a not in APPS]
        unknown += [s for s in self.servers if s not in SERVERS]
        if unknown:
            raise ValueError(f"unknown app(s) or server(s): {', '.join(unknown)}")
        if min(self.conns, default=0) < 1 or self.threads < 1 or self.slow < 1:
            raise ValueError("conns, threads and slow must be at least 1")


@dataclass
class SlowlorisRun:
    """One server's normal load alone and under the attack."""

    server: str
    alone: BenchResult
    attacked: BenchResult
    slow_connected: int

    @property
    def kept(self) -> float:
        """The attacked request rate as a share of the unattacked one."""
        base = self.alone.ops_per_s
        return self.attacked.ops_per_s / base if base > 0 else float("nan")

    def to_dict(self) -> dict[str, Any]:
        return {
            "server": self.server,
            "alone": self.alone.to_dict(),
            "attacked": self.attacked.to_dict(),
            "slow_connected": self.slow_connected,
            "kept": self.kept,
        }


@dataclass
class WsgiBenchReport:
    config: WsgiBenchConfig
    results: list[BenchResult] = field(default_factory=list)
    slowloris: list[SlowlorisRun] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def _measure(
    server: ServerProcess,
    name: str,
    app: str,
    conns: int,
    config: WsgiBenchConfig,
    core: int | None,
) -> BenchResult:
    load = HttpLoadConfig(
        "127.0.0.1", server.port, conns=conns, duration=config.duration, warmup=config.warmup
    )
    result = measure_http(server, name, load, load="wrk", load_core=core)
    result.extra.update(app=app, threads=config.threads)
    return result


def _serve(name: str, app: str, config: WsgiBenchConfig, core: int | None) -> ServerProcess:
    port = free_port()
    return ServerProcess(
        SERVERS[name].command(port, APPS[app], config.threads), port=port, core=core
    )


def run_wsgi_bench(
    config: WsgiBenchConfig, progress: Callable[[str], object] = lambda _: None
) -> WsgiBenchReport:
    """Every app x conns x server, then the slowloris comparison (module docstring)."""
    if wrk_path() is None:
        raise RuntimeError("ioreactor bench wsgi needs wrk (apt-get install wrk)")
    report = WsgiBenchReport(config)
    servers = [s for s in config.servers if s not in missing_servers(config.servers)]
    report.skipped = [f"{s}: not installed" for s in missing_servers(config.servers)]
    plan = core_plan()
    with current_process_pinned(plan.load):
        for app in config.apps:
            for conns in config.conns:
                for name in servers:
                    progress(f"{app}, {conns} conns: {name}")
                    with _serve(name, app, config, plan.server) as server:
                        result = _measure(server, name, app, conns, config, plan.load)
                    report.results.append(result)
        if config.slowloris:
            for name in (s for s in SLOWLORIS_SERVERS if s in servers):
                progress(f"slowloris, {config.slow} slow connections: {name}")
                report.slowloris.append(run_slowloris_against(name, config, plan.server, plan.load))
    return report


def run_slowloris_against(
    name: str, config: WsgiBenchConfig, server_core: int | None, load_core: int | None
) -> SlowlorisRun:
    """``name`` serving the Flask hello: the normal load alone, then under the attack."""
    with _serve(name, "flask", config, server_core) as server:
        alone = _measure(server, name, "flask", config.slow_conns, config, load_core)
        attack_config = AttackConfig(
            "127.0.0.1", server.port, config.slow, config.interval, SLOW_HEADER_TIMEOUT
        )
        with Attack(attack_config, load_core, 60 + config.slow / 100) as attack:
            attacked = _measure(server, name, "flask", config.slow_conns, config, load_core)
            attack.close()
    return SlowlorisRun(name, alone, attacked, attack.connected)


def ratio_to_baseline(result: BenchResult, results: Sequence[BenchResult]) -> float | None:
    """``result``'s CPU per request over gunicorn gthread's (same app and conns)."""
    for peer in results:
        if (
            peer.name == BASELINE
            and peer.conns == result.conns
            and peer.extra.get("app") == result.extra.get("app")
            and peer.ops
        ):
            return result.cpu_us_per_op / peer.cpu_us_per_op
    return None


def verdict_lines(report: WsgiBenchReport) -> list[str]:
    """The targets, in words."""
    lines = []
    for result in report.results:
        if result.name != "ioreactor":
            continue
        ratio = ratio_to_baseline(result, report.results)
        if ratio is not None:
            met = "met" if ratio <= CPU_TARGET else "MISSED"
            lines.append(
                f"{result.extra['app']}, {result.conns:,} conns: ioreactor uses {ratio:.2f} x "
                f"gunicorn gthread's CPU per request (target <= {CPU_TARGET}): {met}"
            )
    for run in report.slowloris:
        met = "met" if run.kept >= THROUGHPUT_TARGET else "MISSED"
        target = f" (target >= {THROUGHPUT_TARGET}: {met})"
        lines.append(
            f"slowloris ({report.config.slow:,} slow connections, {run.slow_connected:,} held): "
            f"{run.server} keeps {run.kept:.2f} of its unattacked rate"
            + (target if run.server == "ioreactor" else "")
        )
    lines += [f"skipped {s}" for s in report.skipped]
    return lines
