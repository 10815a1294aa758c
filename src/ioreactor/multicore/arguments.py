"""The command-line flags of every server command: where, which backend, how many cores.

``ioreactor echo`` uses them, and so can any other server command::

    add_serving_arguments(parser)
    ...
    return run_server(make_handler, **serving_options(args))
"""

from __future__ import annotations

import argparse
from typing import Any

from ioreactor.loop.poller import available_pollers
from ioreactor.multicore.config import DISPATCHES, default_dispatch, default_workers
from ioreactor.net.server import BALANCES, SHUTDOWN_TIMEOUT


def add_serving_arguments(
    p: argparse.ArgumentParser, default_listen: str = "127.0.0.1:7000", *, repeat: bool = False
) -> None:
    """Add --listen, --poller, --backlog, --workers, --loops, --dispatch, --balance, ...

    With ``repeat``, ``--listen`` may be given several times (``args.listen`` is then a
    list, or None when absent: the caller applies ``default_listen``).
    """
    if repeat:
        p.add_argument(
            "--listen",
            action="append",
            default=None,
            metavar="ADDRESS",
            help=f"HOST:PORT, udp://, unix:///path, unix-dgram:///path; repeat to serve "
            f"several (default {default_listen})",
        )
    else:
        p.add_argument("--listen", default=default_listen, help="HOST:PORT (default %(default)s)")
    p.add_argument(
        "--poller",
        choices=available_pollers(),
        default=None,
        help="I/O backend: a poller, or uring (io_uring completion mode) "
        "(default: the best poller this OS has)",
    )
    p.add_argument("--backlog", type=int, default=1024, help="listen() backlog")
    p.add_argument(
        "--workers",
        type=int,
        default=default_workers(),
        metavar="M",
        help="worker processes (default: one per core, %(default)s here; 0: no fork)",
    )
    p.add_argument(
        "--loops",
        type=int,
        default=0,
        metavar="N",
        help="sub-reactor threads per process (default 0: one loop accepts and serves)",
    )
    p.add_argument(
        "--dispatch",
        choices=DISPATCHES,
        default=default_dispatch(),
        help="how workers get connections: their own SO_REUSEPORT listeners, or fds "
        "passed by the supervisor (default %(default)s)",
    )
    p.add_argument(
        "--balance",
        choices=BALANCES,
        default="round-robin",
        help="how a connection picks a worker (fdpass) and a sub-loop (default %(default)s)",
    )
    p.add_argument(
        "--shutdown-timeout",
        type=float,
        default=SHUTDOWN_TIMEOUT,
        metavar="S",
        help="on SIGTERM/SIGINT, seconds connections get to finish (default %(default)s); "
        "a second SIGINT stops at once",
    )


def serving_options(args: argparse.Namespace) -> dict[str, Any]:
    """The keyword arguments of :func:`~ioreactor.multicore.run_server` from those flags."""
    return {
        "address": args.listen,
        "workers": args.workers,
        "loops": args.loops,
        "dispatch": args.dispatch,
        "balance": args.balance,
        "poller": args.poller,
        "backlog": args.backlog,
        "shutdown_timeout": args.shutdown_timeout,
    }
