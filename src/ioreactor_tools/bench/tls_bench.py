"""The TLS benchmark: three workloads, each server in turn pinned to the server core, the
load on the other, the server's process-tree CPU read from ``/proc`` around the window.

::

    keepalive   wrk over https, keep-alive GET /        ioreactor serve | uvloop | nginx
                                                        -> server CPU µs per request
    handshake   openssl s_time -new (full handshakes:   ioreactor serve | uvloop | nginx
                no resumption), one GET each            -> server CPU µs per handshake
    bulk        1 GiB through one TLS echo connection   ioreactor echo  | uvloop
                (asyncio's TLS client on uvloop)        -> server CPU µs per MiB

The targets (issue 18): keep-alive <= 1.0 x uvloop; handshakes <= 1.1 x nginx; bulk
<= 1.0 x uvloop. Every server gets the same throwaway ECDSA P-256 certificate
(:func:`~ioreactor_tools.bench.tls_peers.make_certificate`) and OpenSSL's defaults:
TLS 1.3, TLS_AES_256_GCM_SHA384, X25519. (wrk resumes sessions when it reconnects, so
it cannot measure full handshakes: ``s_time -new`` does, several processes at once.)
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ioreactor_tools.bench.nginx_peers import nginx_path
from ioreactor_tools.bench.pinning import WARMUP
from ioreactor_tools.bench.tls_peers import (
    Certificate,
    nginx_command,
    tls_peer_command,
    unavailable,
)

if TYPE_CHECKING:
    from rich.console import Console

    from ioreactor_tools.bench.pinning import CorePlan
    from ioreactor_tools.bench.report import BenchResult

#: The workloads, in the order they run.
WORKLOADS = ("keepalive", "handshake", "bulk")
#: The servers of each workload (ioreactor first); the baseline the target names.
SERVERS: dict[str, tuple[str, ...]] = {
    "keepalive": ("ioreactor", "uvloop", "nginx"),
    "handshake": ("ioreactor", "uvloop", "nginx"),
    "bulk": ("ioreactor", "uvloop"),
}
TARGETS: dict[str, tuple[str, float]] = {
    "keepalive": ("uvloop", 1.0),
    "handshake": ("nginx", 1.1),
    "bulk": ("uvloop", 1.0),
}
#: ``openssl s_time`` processes run at once (each makes one connection at a time).
HANDSHAKE_CLIENTS = 4
#: Bytes per write of the bulk client.
BULK_CHUNK = 256 * 1024
MiB = 1024 * 1024


@dataclass(frozen=True)
class TlsBenchConfig:
    workloads: tuple[str, ...] = WORKLOADS
    conns: tuple[int, ...] = (100, 1000)
    duration: float = 5.0
    warmup: float = WARMUP
    handshake_clients: int = HANDSHAKE_CLIENTS
    bulk_mib: int = 1024
    servers: tuple[str, ...] = ("ioreactor", "uvloop", "nginx")
    poller: str | None = None
    rounds: int = 1


@dataclass
class Window:
    """What one measured window saw (the load's side)."""

    ops: int
    duration: float
    p50_us: float = float("nan")
    p99_us: float = float("nan")
    errors: dict[str, int] = field(default_factory=dict)


def skipped(servers: Sequence[str]) -> dict[str, str]:
    """Servers that cannot run here, and why."""
    reasons = {}
    for name in servers:
        peer = {"uvloop": "uvloop-https", "nginx": "nginx"}.get(name)
        if peer is not None and (reason := unavailable(peer)) is not None:
            reasons[name] = reason
    if shutil.which("wrk") is None:
        reasons["wrk"] = "wrk is not installed (Debian: apt-get install wrk): no keepalive"
    return reasons


# -- the servers -----------------------------------------------------------------------------


def ioreactor_command(workload: str, port: int, cert: Certificate, poller: str | None) -> list[str]:
    """``ioreactor serve`` (keep-alive, handshakes) or ``ioreactor echo`` (bulk), TLS on."""
    from ioreactor_tools.bench.pinning import IOREACTOR_COMMAND

    tls = ["--certfile", str(cert.certfile), "--keyfile", str(cert.keyfile)]
    common = ["--workers", "0", "--listen", f"127.0.0.1:{port}", *tls]
    if poller:
        common += ["--poller", poller]
    base = list(IOREACTOR_COMMAND)
    if workload == "bulk":
        return [*base, "echo", *common]
    # like the peers: no connection closed or timed out by the server here
    limits = ["--max-requests", str(10**9), "--keepalive-timeout", "3600"]
    return [*base, "serve", *common, *limits, "--header-timeout", "3600"]


def server_command(
    name: str, workload: str, port: int, cert: Certificate, poller: str | None
) -> list[str]:
    if name == "ioreactor":
        return ioreactor_command(workload, port, cert, poller)
    if name == "nginx":
        return nginx_command(port, cert)
    peer = "uvloop-tls-echo" if workload == "bulk" else "uvloop-https"
    return tls_peer_command(peer, port, cert)


# -- the loads --------------------------------------------------------------------------------


def keepalive_load(
    port: int,
    conns: int,
    config: TlsBenchConfig,
    core: int | None,
    before: Callable[[], object],
    after: Callable[[], object],
) -> Window:
    """wrk over https, keep-alive GET / on ``conns`` connections."""
    from ioreactor_tools.bench.http_load import parse_wrk_output

    def wrk(seconds: float) -> list[str]:
        argv = [
            "wrk",
            "-t1",
            f"-c{conns}",
            f"-d{max(1, round(seconds))}s",
            "--latency",
            "--timeout",
            "10s",
            f"https://127.0.0.1:{port}/",
        ]
        return ["taskset", "-c", str(core), *argv] if core is not None else argv

    limit = 60 + config.warmup + config.duration
    if config.warmup > 0:
        subprocess.run(wrk(config.warmup), capture_output=True, timeout=limit, check=True)
    before()
    done = subprocess.run(wrk(config.duration), capture_output=True, text=True, timeout=limit)
    after()
    result = parse_wrk_output(done.stdout)
    return Window(result.requests, result.duration, result.p50_us, result.p99_us, result.errors)


_S_TIME_COUNT = re.compile(r"(\d+) connections in [\d.]+s;")


def handshake_load(
    port: int,
    clients: int,
    config: TlsBenchConfig,
    core: int | None,
    before: Callable[[], object],
    after: Callable[[], object],
) -> Window:
    """``clients`` ``openssl s_time -new`` processes: a full TLS handshake and one GET
    per connection, for the window; the handshakes are the connections they report."""
    openssl = shutil.which("openssl")
    if openssl is None:
        raise RuntimeError("the handshake workload needs the openssl command line tool")

    def s_time(seconds: float) -> list[str]:
        argv = [openssl, "s_time", "-connect", f"127.0.0.1:{port}", "-new", "-www", "/"]
        argv += ["-time", str(max(1, round(seconds)))]
        return ["taskset", "-c", str(core), *argv] if core is not None else argv

    def run(seconds: float) -> list[str]:
        procs = [
            subprocess.Popen(s_time(seconds), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
            for _ in range(clients)
        ]
        return [p.communicate(timeout=60 + seconds)[0].decode() for p in procs]

    if config.warmup > 0:
        run(config.warmup)
    before()
    start = time.monotonic()
    outputs = run(config.duration)
    after()
    elapsed = time.monotonic() - start
    counts = [int(m.group(1)) for out in outputs if (m := _S_TIME_COUNT.search(out))]
    errors = {"s_time:no report": clients - len(counts)} if len(counts) < clients else {}
    return Window(sum(counts), elapsed, errors=errors)


def bulk_load(
    port: int,
    config: TlsBenchConfig,
    before: Callable[[], object],
    after: Callable[[], object],
) -> Window:
    """``bulk_mib`` MiB through one TLS echo connection (uvloop's TLS client, in this
    process, on the load core): written in chunks while the echo is read back."""
    import asyncio
    import ssl

    import uvloop

    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    total = config.bulk_mib * MiB
    chunk = bytes(range(256)) * (BULK_CHUNK // 256)

    async def transfer(size: int) -> int:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context)

        async def send() -> None:
            for _ in range(size // BULK_CHUNK):
                writer.write(chunk)
                await writer.drain()

        sending = asyncio.ensure_future(send())
        received = 0
        while received < size:
            data = await reader.read(1 << 20)
            if not data:
                break
            received += len(data)
        await sending
        writer.close()
        return received

    warm = min(total, 64 * MiB)
    uvloop.run(transfer(warm))
    before()
    start = time.monotonic()
    received = uvloop.run(transfer(total))
    elapsed = time.monotonic() - start
    after()
    errors = {"short echo": 1} if received != total else {}
    return Window(received // MiB, elapsed, errors=errors)


# -- one run ----------------------------------------------------------------------------------


def measure(
    name: str,
    workload: str,
    conns: int,
    config: TlsBenchConfig,
    plan: CorePlan,
    cert: Certificate,
) -> BenchResult:
    from ioreactor.testing import free_port
    from ioreactor_tools.bench.pinning import ServerProcess
    from ioreactor_tools.bench.procstat import TreeSample
    from ioreactor_tools.bench.report import BenchResult

    port = free_port()
    command = server_command(name, workload, port, cert, config.poller)
    samples: dict[str, TreeSample] = {}
    with ServerProcess(command, port=port, core=plan.server) as server:

        def before() -> None:
            samples["before"] = server.sample(count_fds=False)

        def after() -> None:
            samples["after"] = server.sample(count_fds=False)

        if workload == "keepalive":
            window = keepalive_load(port, conns, config, plan.load, before, after)
        elif workload == "handshake":
            window = handshake_load(port, conns, config, plan.load, before, after)
        else:
            window = bulk_load(port, config, before, after)
    start, end = samples["before"], samples["after"]
    unit = {"keepalive": "req", "handshake": "handshake", "bulk": "MiB"}[workload]
    return BenchResult(
        name=name,
        conns=conns,
        ops=window.ops,
        duration=window.duration,
        server_cpu_seconds=end.cpu_seconds - start.cpu_seconds,
        server_user_seconds=end.user_seconds - start.user_seconds,
        p50_us=window.p50_us,
        p99_us=window.p99_us,
        p999_us=float("nan"),
        rss_bytes=end.rss_bytes,
        errors=window.errors,
        unit=unit,
        extra={"workload": workload, "command": " ".join(command)},
    )


def run_tls_bench(
    config: TlsBenchConfig, *, console: Console, cert: Certificate
) -> list[BenchResult]:
    """Every workload, every server, in one run; rounds interleave the servers."""
    from ioreactor_tools.bench.pinning import core_plan, pin_current_process

    plan = core_plan()
    pin_current_process(plan.load)
    missing = skipped(config.servers)
    for name, reason in missing.items():
        console.print(f"[yellow]skipping {name}: {reason}[/]")
    results = []
    for round_no in range(config.rounds):
        for workload in config.workloads:
            if workload == "keepalive" and "wrk" in missing:
                continue
            counts = {
                "keepalive": config.conns,
                "handshake": (config.handshake_clients,),
                "bulk": (1,),
            }[workload]
            for conns in counts:
                for name in SERVERS[workload]:
                    if name not in config.servers or name in missing:
                        continue
                    if name == "nginx" and nginx_path() is None:
                        continue
                    label = f"round {round_no + 1}/{config.rounds}: " if config.rounds > 1 else ""
                    console.print(f"[dim]{label}{workload}: {name}, {conns:,} ...[/]")
                    result = measure(name, workload, conns, config, plan, cert)
                    result.extra["round"] = round_no
                    results.append(result)
    return results


def target_lines(results: Sequence[BenchResult]) -> list[str]:
    """One verdict per workload and connection count: the median of the per-round ratios."""
    from ioreactor_tools.bench.report import of_workload, round_ratios, verdict_line

    lines = []
    for workload, (baseline, target) in TARGETS.items():
        rows = of_workload(results, workload)
        for conns in dict.fromkeys(r.conns for r in rows if r.name == "ioreactor"):
            values = round_ratios(rows, "ioreactor", conns, baseline)
            if values:
                ratio_name = f"ioreactor / {baseline} server CPU"
                lines.append(verdict_line(f"{workload}, {conns:,}", ratio_name, values, target))
    return lines
