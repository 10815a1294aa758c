"""`ioreactor bench soak`: keep-alive, pipelined, slowloris and echo traffic for a long time.

Two servers (the HTTP echo application and the TCP echo service, ``--workers`` processes
each, pinned to the server core) and ``--conns`` connections split over load processes
on the load core, every response and every echoed byte checked. Prints progress every
``--sample`` seconds, then errors by kind, the expected closes, RSS and fds growth after
the warm-up, the loop lag p99; writes JSON and a PNG (RSS, fds, exchanges/s, lag over
time). Exit status 1 on any unexplained error, or when RSS or fds grew after the warm-up.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from ioreactor.cli.arguments import count, positive_count, seconds, seconds_or_zero
from ioreactor_tools.bench.report import timestamped
from ioreactor_tools.cli.bench._args import add_out_option, add_poller_option, config_from_args
from ioreactor_tools.cli.console import report_console


def _mix(text: str) -> dict[str, float]:
    """``--mix keepalive=0.5,echo=0.5``: each kind's share of the connections."""
    from ioreactor_tools.bench.soak import KINDS, parse_mix

    try:
        mix = parse_mix(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    shares = mix.values()
    if not all(math.isfinite(v) and v >= 0 for v in shares) or sum(shares) <= 0:
        raise argparse.ArgumentTypeError(
            f"expected KIND=SHARE,... with shares >= 0 and not all 0 (kinds: {', '.join(KINDS)})"
        )
    return mix


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from ioreactor_tools.bench.soak import DEFAULT_MIX

    p = subparsers.add_parser(
        "soak",
        help="many connections of every kind for a long time, every byte checked",
        description=sys.modules[__name__].__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--conns", type=positive_count, default=20_000, help="connections, all kinds")
    p.add_argument("--duration", type=seconds, default=600.0, help="seconds after the ramp-up")
    mix = ",".join(f"{k}={v:g}" for k, v in DEFAULT_MIX.items())
    p.add_argument("--mix", type=_mix, default=mix, help="share of each kind (default %(default)s)")
    p.add_argument("--think", type=seconds, default=2.0, help="mean seconds between two exchanges")
    p.add_argument(
        "--pipeline", type=positive_count, default=4, help="requests per pipelined write"
    )
    p.add_argument(
        "--slow-interval", type=seconds, default=2.0, help="seconds between two slowloris bytes"
    )
    p.add_argument(
        "--header-timeout", type=seconds, default=10.0, help="the HTTP server's header timeout"
    )
    p.add_argument(
        "--workers", type=positive_count, default=2, help="worker processes of each server"
    )
    p.add_argument("--procs", type=count, default=0, help="load processes (0: 5,000 conns each)")
    p.add_argument("--sample", type=seconds, default=5.0, help="seconds between two readings")
    p.add_argument(
        "--warmup",
        type=seconds_or_zero,
        default=0.0,
        help="seconds before the flatness baseline (0: half the duration)",
    )
    add_poller_option(p)
    add_out_option(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rich.table import Table

    from ioreactor_tools.bench.soak import TRACKED, SoakConfig, plot, run_soak

    try:
        config = config_from_args(SoakConfig, args)
    except ValueError as exc:
        raise SystemExit(f"ioreactor bench soak: {exc}") from None
    command = (
        f"ioreactor bench soak --conns {args.conns} --duration {args.duration:g} "
        f"--think {args.think:g} --workers {args.workers}"
    )
    console = report_console()
    console.print(f"[bold]{command}[/]  ({config.processes} load processes, {config.counts()})")

    def show(s: object) -> None:
        from ioreactor_tools.bench.soak import Sample

        assert isinstance(s, Sample)
        console.print(
            f"t={s.t:7.1f}s  live {s.live:,}  served {s.served:,}  errors {s.errors}  "
            f"RSS http {s.http_rss / 2**20:.0f} MiB echo {s.echo_rss / 2**20:.0f} MiB  "
            f"fds {s.http_fds:,}/{s.echo_fds:,}  lag p99 {s.lag_p99 * 1000:.1f} ms"
        )

    out = Path(args.out)
    report = run_soak(config, command=command, workdir=out, on_sample=show)
    png = plot(report, timestamped("soak", "png", out))
    report.png = None if png is None else str(png)
    tally = report.tally
    table = Table(
        title=f"soak: {report.duration:.0f} s after a {report.ramp_seconds:.0f} s ramp-up"
    )
    table.add_column("kind")
    table.add_column("connections opened", justify="right")
    table.add_column("exchanges checked", justify="right")
    table.add_column("latency p50 / p99 ms", justify="right")
    for kind in ("keepalive", "pipelined", "echo"):
        hist = tally.latency.get(kind)
        lat = (
            "—"
            if hist is None
            else f"{hist.percentile(0.5) / 1e6:.1f} / {hist.percentile(0.99) / 1e6:.1f}"
        )
        table.add_row(
            kind,
            f"{tally.connections_opened.get(kind, 0):,}",
            f"{tally.served.get(kind, 0):,}",
            lat,
        )
    slow = tally.slow
    table.add_row("slow", f"{slow.opened:,}", f"{slow.closed_408:,} x 408", "—")
    console.print(table)
    errors = ", ".join(f"{k} {v}" for k, v in sorted(tally.errors.items())) or "none"
    console.print(
        f"unexplained errors: {errors}; slow closed early {slow.early}, overdue {slow.overdue}"
    )
    expected = ", ".join(f"{k} {v}" for k, v in sorted(tally.expected.items())) or "none"
    console.print(
        f"expected closes: {expected}; slow connections closed by the header "
        f"timeout {slow.closed_408 + slow.closed_silent:,} (408: {slow.closed_408:,})"
    )
    console.print(f"bytes checked: {tally.bytes_checked:,}")
    growth = {a: report.growth(a) for a in TRACKED}
    console.print(
        f"after the {config.warmup_seconds:g} s warm-up: growth "
        + ", ".join(f"{a} {'n/a' if math.isnan(g) else f'{g:+.1%}'}" for a, g in growth.items())
        + ("  (flat)" if report.flat else "  (NOT flat)")
        + f"; trend RSS {report.slope('http_rss') / 2**20:+.2f} / "
        f"{report.slope('echo_rss') / 2**20:+.2f} MiB/min, fds "
        f"{report.slope('http_fds'):+.1f} / {report.slope('echo_fds'):+.1f} per min"
    )
    console.print(
        f"loop lag p99: median {report.lag_p99(0.5) * 1000:.2f} ms, worst "
        f"{report.lag_p99(1.0) * 1000:.2f} ms over {len(report.lag_p99s)} samples; longest "
        f"iteration {report.lag_max * 1000:.1f} ms; slow iterations {report.slow_iterations}"
    )
    console.print(f"server exit status: {report.server_status}")
    path = timestamped("soak", "json", out)
    path.write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    console.print(f"results: {path}" + (f", plot: {png}" if png else ""))
    return 0 if report.error_count == 0 and report.flat else 1
