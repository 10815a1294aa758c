"""`ioreactor serve [MODULE:ATTR]`: serve an HTTP application on one or many cores.

Without MODULE:ATTR it serves the course's HTTP echo application (the 10k-20k connection
server of ``make run``); with it, the user's own -- an ``App`` or a WSGI application
(``--threads``, ``--pool-timeout``, ``--stream-body``, ``--root-path``) -- found by
:func:`ioreactor.http.app_loader.load_app` (``--app-dir``, ``--factory``,
``--interface``) before any worker starts. One loop, sub-reactor threads (``--loops``) or
worker processes (``--workers``, one per core by default), through
:func:`ioreactor.multicore.run_server`; SIGTERM finishes the requests in flight and closes
idle keep-alive connections.
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
    url_path,
)
from ioreactor.cli.tls_arguments import add_tls_arguments, tls_server_options
from ioreactor.http.limits import Limits
from ioreactor.multicore.config import default_workers
from ioreactor.net.address import format_sockname

if TYPE_CHECKING:
    from ioreactor.http.app_loader import LoadedApp
    from ioreactor.multicore import WorkerContext

log = logging.getLogger("ioreactor.serve")

#: What ``ioreactor serve`` runs without MODULE:ATTR.
ECHO_APP = "ioreactor.http.echo_app:build_echo_app"
#: ``--interface``: detect the kind, or name one of ``app_loader.APP_KINDS`` (kept equal
#: to that table by a test; listed here so building the parser imports no HTTP code).
INTERFACES = ("auto", "native", "wsgi")
#: The flags that apply to WSGI applications only, with the value meaning "not given".
WSGI_FLAGS = {"threads": None, "pool_timeout": None, "stream_body": False, "root_path": ""}


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
        description="Serve MODULE:ATTR, an ioreactor.http.App or a WSGI application (or "
        "with --factory a callable returning one), imported from --app-dir. Without it, the "
        "HTTP echo server: GET / -> Hello, World!; POST|PUT /echo -> the body; GET /echo "
        "-> the request head; GET /healthz -> 200; /static/... -> files under --static.",
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
        help="what kind of application MODULE:ATTR is (default: detected; wsgi: a PEP 3333 "
        "callable whose signature does not say so)",
    )
    p.add_argument(
        "--threads",
        type=positive_count,
        default=None,
        metavar="N",
        help="WSGI: threads running the application per process (default 8)",
    )
    p.add_argument(
        "--pool-timeout",
        type=seconds,
        default=None,
        metavar="S",
        help="WSGI: seconds a request may wait for a thread and the application's "
        "answer before it gets 503 (default 30)",
    )
    p.add_argument(
        "--stream-body",
        action="store_true",
        help="WSGI: run the application at the request head and stream the body to "
        "wsgi.input (default: the body is received whole first)",
    )
    p.add_argument(
        "--root-path",
        type=url_path,
        default="",
        metavar="PATH",
        help="WSGI: the SCRIPT_NAME the application is mounted at, e.g. /app "
        "(stripped from PATH_INFO)",
    )
    add_serving_arguments(p, default_listen="127.0.0.1:8080")
    add_tls_arguments(p)
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
        if args.factory or args.app_dir is not None or args.interface != "auto":
            raise CommandError("serve: --factory, --app-dir and --interface need MODULE:ATTR")
        if any(getattr(args, name) != unset for name, unset in WSGI_FLAGS.items()):
            raise CommandError("serve: the WSGI flags need MODULE:ATTR, a WSGI application")
        from ioreactor.http.echo_app import build_echo_app

        return LoadedApp(ECHO_APP, NATIVE, build_echo_app())
    try:
        loaded = load_app(
            args.app, app_dir=args.app_dir, factory=args.factory, interface=args.interface
        )
    except AppLoadError as exc:
        raise CommandError(f"serve: {exc}") from None
    if loaded.kind.name != "wsgi":
        for name, unset in WSGI_FLAGS.items():
            if getattr(args, name) != unset:
                flag = "--" + name.replace("_", "-")
                raise CommandError(
                    f"serve: {flag} applies to WSGI applications; {args.app} is "
                    f"{loaded.kind.description}"
                )
    return loaded


def run(args: argparse.Namespace) -> int:
    # imported here: every ioreactor command imports this module to build the parser
    from ioreactor.http.app_loader import ServeOptions
    from ioreactor.http.https import HTTPS_ALPN, PLAIN_HTTP_REPLY
    from ioreactor.multicore import run_server

    loaded = application(args)  # before any worker starts: errors are one line, exit 2
    tls = tls_server_options(args, alpn=HTTPS_ALPN, plaintext_reply=PLAIN_HTTP_REPLY)
    scheme = "https://" if tls else "http://"
    workers = default_workers() if args.workers is None else args.workers
    make_handler = loaded.handler_factory(
        ServeOptions(
            limits_from(args),
            access_log=args.access_log,
            static_dir=args.static,
            root_path=args.root_path,
            threads=args.threads,
            stream_body=args.stream_body,
            pool_timeout=args.pool_timeout,
            multiprocess=workers > 1,
        )
    )
    what = "HTTP echo server" if loaded.spec == ECHO_APP else f"{loaded.spec} ({loaded.kind.name})"

    def announce(ctx: WorkerContext) -> None:
        url = format_sockname(args.listen.kind, ctx.server.sockname).replace("tcp://", scheme)
        log.info("%s on %s (pid %d)", what, url, ctx.pid)

    return run_server(make_handler, on_worker_start=announce, **serving_options(args), **tls)
