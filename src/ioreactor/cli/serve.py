"""`ioreactor serve [MODULE:ATTR]`: serve an HTTP application on one or many cores.

Without MODULE:ATTR it serves the course's HTTP echo application (the 10k-20k connection
server of ``make run``); with it, the user's own, found by
:func:`ioreactor.http.app_loader.load_app` (``--app-dir``, ``--factory``) before any
worker starts. One loop, sub-reactor threads (``--loops``) or worker processes
(``--workers``, one per core by default), through :func:`ioreactor.multicore.run_server`;
SIGTERM finishes the requests in flight and closes idle keep-alive connections.
"""

from __future__ import annotations

import argparse
import logging
from typing import TYPE_CHECKING

from ioreactor.cli.arguments import (
    CommandError,
    add_serving_arguments,
    existing_dir,
    positive_count,
    seconds,
    serving_options,
    trusted_hosts,
    url_prefix,
)
from ioreactor.http.app_loader import INTERFACES, LIFESPAN_MODES
from ioreactor.http.limits import Limits
from ioreactor.net.address import format_sockname

if TYPE_CHECKING:
    from ioreactor.http.app_loader import LoadedApp
    from ioreactor.multicore import WorkerContext

log = logging.getLogger("ioreactor.serve")

#: What ``ioreactor serve`` runs without MODULE:ATTR.
ECHO_APP = "ioreactor.http.echo_app:build_echo_app"


def app_spec(text: str) -> str:
    """``MODULE:ATTR``, checked for its form (the import comes later, before serving)."""
    from ioreactor.http.app_loader import AppLoadError, split_spec

    try:
        split_spec(text)
    except AppLoadError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "serve",
        help="serve an HTTP application (default: the HTTP echo server)",
        description="Serve MODULE:ATTR, an ioreactor.http.App or an ASGI application "
        "(FastAPI, Starlette, ...; or with --factory a callable returning one), imported "
        "from --app-dir. Without it, the HTTP echo server: "
        "GET / -> Hello, World!; POST|PUT /echo -> the body; GET /echo -> the request "
        "head; GET /healthz -> 200; /static/... -> files under --static.",
    )
    p.add_argument(
        "app",
        type=app_spec,
        nargs="?",
        default=None,
        metavar="MODULE:ATTR",
        help="the application, e.g. myproj.web:app (default: the HTTP echo application)",
    )
    p.add_argument(
        "--factory",
        action="store_true",
        help="ATTR is a callable without arguments that returns the application",
    )
    p.add_argument(
        "--app-dir",
        type=existing_dir,
        default=None,
        metavar="DIR",
        help="directory put first on the import path (default: the current directory)",
    )
    p.add_argument(
        "--interface",
        choices=INTERFACES,
        default="auto",
        help="what kind of application MODULE:ATTR is (default: auto, found from the object)",
    )
    p.add_argument(
        "--root-path",
        type=url_prefix,
        default="",
        metavar="PATH",
        help="the path prefix the application is mounted under, behind a proxy (ASGI)",
    )
    p.add_argument(
        "--lifespan",
        choices=LIFESPAN_MODES,
        default="auto",
        help="the ASGI lifespan protocol: auto (if the app speaks it), on, off "
        "(default %(default)s)",
    )
    p.add_argument(
        "--proxy-headers",
        action="store_true",
        help="apply Forwarded / X-Forwarded-For / X-Forwarded-Proto from trusted peers (ASGI)",
    )
    p.add_argument(
        "--forwarded-allow-ips",
        type=trusted_hosts,
        default=("127.0.0.1",),
        metavar="IPS",
        help="peers trusted with --proxy-headers: addresses, networks, * or unix "
        "(default 127.0.0.1)",
    )
    add_serving_arguments(p, default_listen="127.0.0.1:8080")
    p.add_argument(
        "--static", type=existing_dir, metavar="DIR", default=None, help="serve DIR under /static/"
    )
    p.add_argument("--access-log", action="store_true", help="log every request")
    defaults = Limits()
    p.add_argument(
        "--header-timeout",
        type=seconds,
        default=defaults.header_timeout,
        help="seconds to receive a request head (default %(default)s)",
    )
    p.add_argument(
        "--body-timeout",
        type=seconds,
        default=defaults.body_timeout,
        help="seconds a body may stall (default %(default)s)",
    )
    p.add_argument(
        "--keepalive-timeout",
        type=seconds,
        default=defaults.keepalive_timeout,
        help="seconds an idle keep-alive connection is kept (default %(default)s)",
    )
    p.add_argument(
        "--max-body",
        type=positive_count,
        default=defaults.max_body,
        help="largest request body in bytes (default %(default)s)",
    )
    p.add_argument(
        "--max-requests",
        type=positive_count,
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


def application(args: argparse.Namespace) -> LoadedApp:
    """The application to serve: MODULE:ATTR, or the echo application."""
    from ioreactor.http.app_loader import NATIVE, AppLoadError, LoadedApp, load_app

    if args.app is None:
        if args.factory or args.app_dir is not None:
            raise CommandError("serve: --factory and --app-dir need MODULE:ATTR")
        from ioreactor.http.echo_app import build_echo_app

        return LoadedApp(ECHO_APP, NATIVE, build_echo_app())
    try:
        loaded = load_app(
            args.app, app_dir=args.app_dir, factory=args.factory, interface=args.interface
        )
    except AppLoadError as exc:
        raise CommandError(f"serve: {exc}") from None
    if loaded.kind is not NATIVE:
        if args.static is not None:
            raise CommandError(
                f"serve: --static serves files for an ioreactor App; "
                f"{args.app} is {loaded.kind.description}"
            )
        if args.loops:
            raise CommandError(
                f"serve: {loaded.kind.description} runs on one asyncio loop "
                "per process: use --workers instead of --loops"
            )
    return loaded


def run(args: argparse.Namespace) -> int:
    # imported here: every ioreactor command imports this module to build the parser
    from ioreactor.http.app_loader import ServeOptions
    from ioreactor.multicore import run_server

    loaded = application(args)  # before any worker starts: errors are one line, exit 2
    make_handler = loaded.handler_factory(
        ServeOptions(
            limits_from(args),
            access_log=args.access_log,
            static_dir=args.static,
            root_path=args.root_path,
            lifespan=args.lifespan,
            forwarded_allow_ips=args.forwarded_allow_ips if args.proxy_headers else None,
        )
    )
    what = "HTTP echo server" if loaded.spec == ECHO_APP else f"{loaded.spec} ({loaded.kind.name})"

    def announce(ctx: WorkerContext) -> None:
        url = format_sockname(args.listen.kind, ctx.server.sockname).replace("tcp://", "http://")
        log.info("%s on %s (pid %d)", what, url, ctx.pid)

    return run_server(make_handler, on_worker_start=announce, **serving_options(args))
