"""`ioreactor serve`: the HTTP/1.1 echo server (the course's 10k-20k connection server)."""

from __future__ import annotations

import argparse
import logging
import os
import signal

from ioreactor.http.echo_app import build_echo_app
from ioreactor.http.limits import Limits
from ioreactor.http.server import SHUTDOWN_GRACE, HttpServer
from ioreactor.loop.event_loop import EventLoop
from ioreactor.loop.poller import available_pollers
from ioreactor.net.acceptor import BACKLOG
from ioreactor.net.sockopt import raise_nofile_limit

log = logging.getLogger("ioreactor.serve")


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "serve",
        help="run the HTTP/1.1 echo server",
        description="GET / -> Hello, World!; POST|PUT /echo -> the body; GET /echo -> the "
        "request head; GET /healthz -> 200; /static/... -> files under --static.",
    )
    p.add_argument("--listen", default="127.0.0.1:8080", help="HOST:PORT (default %(default)s)")
    p.add_argument(
        "--workers",
        type=_positive_int,
        default=os.cpu_count() or 1,
        help="worker processes (default: the number of cores, %(default)s)",
    )
    p.add_argument("--loops", type=_positive_int, default=1, help="event loops per worker")
    p.add_argument(
        "--poller",
        choices=available_pollers(),
        default=None,
        help="I/O multiplexing backend (default: the best this OS has)",
    )
    p.add_argument("--static", metavar="DIR", default=None, help="serve DIR under /static/")
    p.add_argument("--access-log", action="store_true", help="log every request")
    p.add_argument("--backlog", type=_positive_int, default=BACKLOG, help="listen() backlog")
    p.add_argument(
        "--grace",
        type=_positive_float,
        default=SHUTDOWN_GRACE,
        help="seconds SIGTERM waits for in-flight requests (default %(default)s)",
    )
    defaults = Limits()
    p.add_argument("--header-timeout", type=_positive_float, default=defaults.header_timeout)
    p.add_argument("--body-timeout", type=_positive_float, default=defaults.body_timeout)
    p.add_argument("--keepalive-timeout", type=_positive_float, default=defaults.keepalive_timeout)
    p.add_argument("--max-body", type=_positive_int, default=defaults.max_body)
    p.add_argument(
        "--max-requests",
        type=_positive_int,
        default=defaults.max_requests_per_connection,
        help="requests per connection before it closes (default %(default)s)",
    )
    p.set_defaults(func=run)


def limits_from(args: argparse.Namespace) -> Limits:
    return Limits(
        header_timeout=args.header_timeout,
        body_timeout=args.body_timeout,
        keepalive_timeout=args.keepalive_timeout,
        max_body=args.max_body,
        max_requests_per_connection=args.max_requests,
        sweep_interval=min(1.0, args.header_timeout / 2, args.keepalive_timeout / 2),
    )


def run(args: argparse.Namespace) -> int:
    if args.workers != 1 or args.loops != 1:
        log.error(
            "--workers %d --loops %d: multi-core serving is not available yet "
            "(ioreactor.multicore has not landed); use --workers 1 --loops 1",
            args.workers,
            args.loops,
        )
        return 2
    raise_nofile_limit()
    app = build_echo_app(args.static)
    loop = EventLoop(args.poller, name="http")
    server = HttpServer(
        loop,
        args.listen,
        app,
        limits=limits_from(args),
        access_log=args.access_log,
        backlog=args.backlog,
    ).start()

    def graceful() -> None:
        log.info("shutting down: finishing in-flight requests (grace %.1f s)", args.grace)
        server.shutdown(args.grace, on_done=loop.stop)

    loop.add_signal_handler(signal.SIGTERM, graceful)
    loop.add_signal_handler(signal.SIGINT, loop.stop)
    log.info("HTTP server on http://%s:%d (poller %s)", *server.sockname[:2], loop.poller.name)
    loop.run()
    server.close()
    loop.close()
    return 0
