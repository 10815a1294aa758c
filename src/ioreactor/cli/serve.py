"""`ioreactor serve`: the HTTP/1.1 echo server (the course's 10k-20k connection server).

One loop, sub-reactor threads (``--loops``) or worker processes (``--workers``, one per
core by default), through :func:`ioreactor.multicore.run_server`; SIGTERM finishes the
requests in flight and closes idle keep-alive connections.
"""

from __future__ import annotations

import argparse
import logging
from typing import TYPE_CHECKING

from ioreactor.cli.tls_arguments import add_tls_arguments, tls_server_options
from ioreactor.http.limits import Limits
from ioreactor.multicore.arguments import add_serving_arguments, serving_options

if TYPE_CHECKING:
    from ioreactor.multicore import WorkerContext

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
    add_serving_arguments(p, default_listen="127.0.0.1:8080")
    add_tls_arguments(p)
    p.add_argument("--static", metavar="DIR", default=None, help="serve DIR under /static/")
    p.add_argument("--access-log", action="store_true", help="log every request")
    defaults = Limits()
    p.add_argument(
        "--header-timeout",
        type=_positive_float,
        default=defaults.header_timeout,
        help="seconds to receive a request head (default %(default)s)",
    )
    p.add_argument(
        "--body-timeout",
        type=_positive_float,
        default=defaults.body_timeout,
        help="seconds a body may stall (default %(default)s)",
    )
    p.add_argument(
        "--keepalive-timeout",
        type=_positive_float,
        default=defaults.keepalive_timeout,
        help="seconds an idle keep-alive connection is kept (default %(default)s)",
    )
    p.add_argument(
        "--max-body",
        type=_positive_int,
        default=defaults.max_body,
        help="largest request body in bytes (default %(default)s)",
    )
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
    # imported here: every ioreactor command imports this module to build the parser
    from ioreactor.http.echo_app import build_echo_app
    from ioreactor.http.handler import HttpHandler
    from ioreactor.http.https import HTTPS_ALPN, PLAIN_HTTP_REPLY
    from ioreactor.multicore import run_server

    app = build_echo_app(args.static)  # checks --static before any worker starts
    limits = limits_from(args)
    access_log = args.access_log
    tls = tls_server_options(args, alpn=HTTPS_ALPN, plaintext_reply=PLAIN_HTTP_REPLY)
    scheme = "https" if tls else "http"

    def make_handler() -> HttpHandler:
        return HttpHandler(app, limits, access_log=access_log)

    def announce(ctx: WorkerContext) -> None:
        host, port = ctx.server.sockname[:2]
        log.info("HTTP echo server on %s://%s:%d (pid %d)", scheme, host, port, ctx.pid)

    return run_server(make_handler, on_worker_start=announce, **serving_options(args), **tls)
