"""`ioreactor serve [MODULE:ATTR]`: serve an HTTP application on one or many cores.

Without MODULE:ATTR it serves the course's HTTP echo application (the 10k-20k connection
server of ``make run``); with it, the user's own -- an ``App``, an ASGI application
(``--lifespan``, ``--root-path``) or a WSGI one (``--threads``, ``--pool-timeout``,
``--stream-body``, ``--root-path``) -- found by
:func:`ioreactor.http.app_loader.load_app` (``--app-dir``, ``--factory``,
``--interface``) before any worker starts. One loop, sub-reactor threads (``--loops``) or
worker processes (``--workers``, one per core by default), through
:func:`ioreactor.multicore.run_server`; SIGTERM finishes the requests in flight and closes
idle keep-alive connections.
"""

from __future__ import annotations

import argparse
import logging
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING

from ioreactor.cli.arguments import (
    CommandError,
    absolute_url_path,
    add_serving_arguments,
    count,
    existing_dir,
    positive_count,
    seconds,
    seconds_or_zero,
    serving_options,
    tcp_listen_address,
    url_path,
)
from ioreactor.cli.tls_arguments import add_tls_arguments, tls_server_options
from ioreactor.http.access_log import FORMATS as ACCESS_LOG_FORMATS
from ioreactor.http.health import HEALTH_PATH
from ioreactor.http.limits import Limits
from ioreactor.multicore.config import default_workers
from ioreactor.net.address import format_sockname

if TYPE_CHECKING:
    from ioreactor.http.app_loader import LoadedApp
    from ioreactor.multicore import WorkerContext
    from ioreactor.net.handlers import Handler

log = logging.getLogger("ioreactor.serve")

#: What ``ioreactor serve`` runs without MODULE:ATTR.
ECHO_APP = "ioreactor.http.echo_app:build_echo_app"
#: ``--interface``: detect the kind, or name one of ``app_loader.APP_KINDS`` (kept equal
#: to that table by a test; listed here so building the parser imports no HTTP code).
INTERFACES = ("auto", "native", "asgi", "wsgi")
#: ``--lifespan`` (``ioreactor.http.asgi.lifespan.LIFESPAN_MODES``, kept equal by a test).
LIFESPAN_MODES = ("auto", "on", "off")
#: The :class:`Limits` fields ``serve`` sets by a flag (the field's name with dashes):
#: field -> (argument type, metavar, help).
LIMIT_FLAGS: dict[str, tuple[Callable[[str], float], str, str]] = {
    "header_timeout": (seconds, "S", "seconds to receive a request head"),
    "body_timeout": (seconds, "S", "seconds a body may stall"),
    "keepalive_timeout": (seconds, "S", "seconds an idle keep-alive connection is kept"),
    "max_body": (positive_count, "BYTES", "largest request body in bytes"),
    "max_requests_per_connection": (
        positive_count,
        "N",
        "requests per keep-alive connection before it closes",
    ),
}
#: The flags that apply to some kinds of application only: the kinds, and the value
#: meaning "not given".
KIND_FLAGS: dict[str, tuple[tuple[str, ...], object]] = {
    "threads": (("wsgi",), None),
    "pool_timeout": (("wsgi",), None),
    "stream_body": (("wsgi",), False),
    "root_path": (("wsgi", "asgi"), ""),
    "lifespan": (("asgi",), "auto"),
}


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
        description="Serve MODULE:ATTR, an ioreactor.http.App, an ASGI application "
        "(FastAPI, Starlette, ...) or a WSGI one (Flask, Django, ...), or with --factory a "
        "callable returning one, imported from --app-dir. Without it, the HTTP echo "
        "server: GET / -> Hello, World!; POST|PUT /echo -> the body; GET /echo -> the "
        "request head; GET /healthz -> 200; /static/... -> files under --static.",
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
        "--root-path",
        type=url_path,
        default="",
        metavar="PATH",
        help="where the application is mounted behind a proxy, e.g. /app: WSGI's "
        "SCRIPT_NAME (stripped from PATH_INFO), ASGI's root_path",
    )
    p.add_argument(
        "--lifespan",
        choices=LIFESPAN_MODES,
        default="auto",
        help="ASGI: the lifespan protocol: auto (if the app speaks it), on, off "
        "(default %(default)s)",
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
    add_serving_arguments(p, default_listen="127.0.0.1:8080")
    add_tls_arguments(p)
    p.add_argument(
        "--static", type=existing_dir, metavar="DIR", default=None, help="serve DIR under /static/"
    )
    p.add_argument("--access-log", action="store_true", help="log every request")
    p.add_argument(
        "--access-log-format",
        choices=ACCESS_LOG_FORMATS,
        default="combined",
        help="combined or common (Apache's Log Formats) or json lines; each line ends with "
        "the request's X-Request-ID (default %(default)s)",
    )
    defaults = Limits()
    for field, (kind, metavar, what) in LIMIT_FLAGS.items():
        p.add_argument(
            "--" + field.replace("_", "-"),
            type=kind,
            default=getattr(defaults, field),
            metavar=metavar,
            help=f"{what} (default %(default)s)",
        )
    add_production_arguments(p)
    p.set_defaults(func=run)


def add_production_arguments(p: argparse.ArgumentParser) -> None:
    """Behind a balancer, under systemd: inherited listeners, forwarding headers,
    draining, worker recycling (docs/deploy.md)."""
    p.add_argument(
        "--fd",
        type=count,
        default=None,
        metavar="N",
        help="serve the inherited listening socket N instead of binding --listen "
        "(socket activation's LISTEN_FDS is taken by itself)",
    )
    p.add_argument(
        "--proxy-headers",
        action="store_true",
        help="take the client's address and scheme from Forwarded / X-Forwarded-For / "
        "X-Forwarded-Proto, from --proxy-allow-ips peers only",
    )
    p.add_argument(
        "--health-path",
        type=absolute_url_path,
        default=HEALTH_PATH,
        metavar="PATH",
        help="answered 200, or 503 once the worker drains (default %(default)s)",
    )
    p.add_argument(
        "--drain-delay",
        type=seconds_or_zero,
        default=0.0,
        metavar="S",
        help="on SIGTERM, seconds a worker keeps serving with the health path at 503 "
        "and every response closing its connection, before it stops accepting "
        "(a balancer's time to notice; default %(default)s)",
    )
    p.add_argument(
        "--max-requests",
        type=count,
        default=0,
        metavar="N",
        help="replace a worker after it served about N requests (0: never; default 0)",
    )
    p.add_argument(
        "--max-requests-jitter",
        type=count,
        default=0,
        metavar="J",
        help="add a random 0..J to each worker's --max-requests (default 0)",
    )
    p.add_argument(
        "--metrics-listen",
        type=tcp_listen_address,
        default=None,
        metavar="ADDRESS",
        help="serve Prometheus metrics of every worker at http://ADDRESS/metrics "
        "(needs prometheus_client: pip install 'ioreactor[metrics]'; default: none)",
    )
    p.add_argument(
        "--max-rss",
        type=count,
        default=0,
        metavar="MIB",
        help="replace a worker whose resident memory passes MIB MiB (0: never; default 0)",
    )


def limits_from(args: argparse.Namespace) -> Limits:
    return Limits(
        **{field: getattr(args, field) for field in LIMIT_FLAGS},
        sweep_interval=min(1.0, args.header_timeout / 2, args.keepalive_timeout / 2),
    )


def application(args: argparse.Namespace) -> LoadedApp:
    """The application to serve: MODULE:ATTR, or the echo application."""
    from ioreactor.http.app_loader import NATIVE, AppLoadError, LoadedApp, load_app

    if args.app is None:
        if args.factory or args.app_dir is not None or args.interface != "auto":
            raise CommandError("serve: --factory, --app-dir and --interface need MODULE:ATTR")
        for name, (kinds, unset) in KIND_FLAGS.items():
            if getattr(args, name) != unset:
                flag = "--" + name.replace("_", "-")
                raise CommandError(
                    f"serve: {flag} needs MODULE:ATTR, a {kinds[0].upper()} application"
                )
        from ioreactor.http.echo_app import build_echo_app

        return LoadedApp(ECHO_APP, NATIVE, build_echo_app())
    try:
        loaded = load_app(
            args.app, app_dir=args.app_dir, factory=args.factory, interface=args.interface
        )
    except AppLoadError as exc:
        raise CommandError(f"serve: {exc}") from None
    for name, (kinds, unset) in KIND_FLAGS.items():
        if loaded.kind.name not in kinds and getattr(args, name) != unset:
            flag = "--" + name.replace("_", "-")
            raise CommandError(
                f"serve: {flag} applies to {' and '.join(k.upper() for k in kinds)} "
                f"applications; {args.app} is {loaded.kind.description}"
            )
    if loaded.kind.name == "asgi":
        if args.loops:
            raise CommandError(
                f"serve: {loaded.kind.description} runs on one asyncio loop per process: "
                "use --workers instead of --loops"
            )
        if args.static is not None:
            raise CommandError(
                f"serve: --static serves files for an ioreactor App or a WSGI application; "
                f"{args.app} is {loaded.kind.description} (mount its own, e.g. StaticFiles)"
            )
    return loaded


def inherited_listeners(args: argparse.Namespace) -> list[socket.socket]:
    """The listeners to serve instead of binding: ``--fd N``, or socket activation's."""
    from ioreactor.net.systemd import (
        SystemdError,
        check_stream_listener,
        listen_fds,
        socket_from_fd,
    )

    try:
        if args.fd is not None:
            return [check_stream_listener(socket_from_fd(args.fd), f"--fd {args.fd}")]
        return [
            check_stream_listener(found.sock, f"inherited fd {found.fd} ({found.name})")
            for found in listen_fds()
        ]
    except SystemdError as exc:
        raise CommandError(f"serve: {exc}") from None


def run(args: argparse.Namespace) -> int:
    # imported here: every ioreactor command imports this module to build the parser
    from ioreactor.http.app_loader import ServeOptions, reload_app
    from ioreactor.http.forwarding import ForwardedHeaders
    from ioreactor.http.https import HTTPS_ALPN, PLAIN_HTTP_REPLY
    from ioreactor.http.metrics import HTTP_METRICS
    from ioreactor.multicore import run_server

    loaded = application(args)  # before any worker starts: errors are one line, exit 2
    tls = tls_server_options(args, alpn=HTTPS_ALPN, plaintext_reply=PLAIN_HTTP_REPLY)
    scheme = "https://" if tls else "http://"
    workers = default_workers() if args.workers is None else args.workers
    listeners = inherited_listeners(args)
    options = ServeOptions(
        limits_from(args),
        access_log=args.access_log,
        static_dir=args.static,
        root_path=args.root_path,
        lifespan=args.lifespan,
        threads=args.threads,
        stream_body=args.stream_body,
        pool_timeout=args.pool_timeout,
        multiprocess=workers > 1,
        forwarded=ForwardedHeaders(args.proxy_allow_ips) if args.proxy_headers else None,
        health_path=args.health_path,
        count_requests=bool(args.max_requests),
        metrics=args.metrics_listen is not None,
        access_log_format=args.access_log_format,
    )
    if args.metrics_listen is not None:
        from ioreactor.multicore.metrics import check_available

        try:
            check_available()
        except ImportError as exc:
            raise CommandError(f"serve: {exc}") from None
    make_handler = loaded.handler_factory(options)
    what = "HTTP echo server" if loaded.spec == ECHO_APP else f"{loaded.spec} ({loaded.kind.name})"

    def reload_handler() -> Callable[[], Handler]:
        if loaded.spec == ECHO_APP:
            return application(args).handler_factory(options)
        fresh = reload_app(
            args.app, app_dir=args.app_dir, factory=args.factory, interface=args.interface
        )
        return fresh.handler_factory(options)

    def announce(ctx: WorkerContext) -> None:
        server = ctx.server
        where = server.address  # an fdpass worker has no listener of its own
        url = format_sockname(where.kind, server.sockname) if server.listening else str(where)
        url = url.replace("tcp://", scheme)
        log.info("%s on %s (pid %d)", what, url, ctx.pid)

    return run_server(
        make_handler,
        on_worker_start=announce,
        listeners=listeners,
        drain_delay=args.drain_delay,
        max_requests=args.max_requests,
        max_requests_jitter=args.max_requests_jitter,
        max_rss=args.max_rss,
        metrics_listen=args.metrics_listen,
        reload_handler=reload_handler,
        requests_served=HTTP_METRICS.served,
        **serving_options(args),
        **tls,
    )
