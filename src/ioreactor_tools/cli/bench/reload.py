"""`ioreactor bench reload`: zero-downtime SIGHUP reloads under a steady load.

``ioreactor serve --workers W`` takes ``--requests`` keep-alive GETs and POSTs (bodies
checked) at ``--rate`` per second while it is reloaded ``--reloads`` times; every
request must succeed (the issue's target: 0 failed of 100,000 across 5 reloads). Prints
each reload's time and the load's summary, writes the JSON to --out; exit status 1 on a
failed request or reload.
"""

from __future__ import annotations

import argparse
import sys

from ioreactor.cli.arguments import output_dir, positive_count, seconds_or_zero
from ioreactor.multicore.config import DISPATCHES
from ioreactor_tools.bench.report import RESULTS_DIR, timestamped


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from ioreactor_tools.bench.reload_soak import ReloadBenchConfig

    defaults = ReloadBenchConfig()
    p = subparsers.add_parser(
        "reload",
        help="SIGHUP reloads under load: every request must succeed",
        description=sys.modules[__name__].__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--requests", type=positive_count, default=defaults.requests)
    p.add_argument("--reloads", type=positive_count, default=defaults.reloads)
    p.add_argument("--rate", type=positive_count, default=int(defaults.rate), help="requests/s")
    p.add_argument("--conns", type=positive_count, default=defaults.conns)
    p.add_argument("--workers", type=positive_count, default=defaults.workers)
    p.add_argument("--dispatch", choices=DISPATCHES, default=None)
    p.add_argument("--drain-delay", type=seconds_or_zero, default=defaults.drain_delay, metavar="S")
    p.add_argument("--out", type=output_dir, default=str(RESULTS_DIR), help="directory for JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ioreactor_tools.bench.reload_soak import (
        ReloadBenchConfig,
        run_reload_bench,
        write_result,
    )

    config = ReloadBenchConfig(
        requests=args.requests,
        reloads=args.reloads,
        rate=float(args.rate),
        conns=args.conns,
        workers=args.workers,
        dispatch=args.dispatch,
        drain_delay=args.drain_delay,
    )
    result = run_reload_bench(config)
    print(result.summary)
    print(
        f"{config.reloads} reloads, {result.retired_ok} old workers exited 0; "
        f"reload times {', '.join(f'{s * 1000:.0f} ms' for s in result.reload_seconds)}"
    )
    verdict = "meets" if result.ok else "MISSES"
    print(
        f"target (0 failed of >= {config.requests:,} requests across {config.reloads} "
        f"reloads): {verdict} ({result.failed} failed of {result.requests:,})"
    )
    print(f"results: {write_result(result, timestamped('reload', 'json', args.out))}")
    return 0 if result.ok else 1
