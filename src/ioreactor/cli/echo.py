"""`ioreactor echo`: the echo server over TCP, UDP and Unix sockets.

One stream address (TCP or Unix) runs on the multi-core layer: one loop, sub-reactor
threads or worker processes. Several addresses, a datagram address, socket options or
a peer-credential check run one process with one loop serving every listener
(:func:`ioreactor.echo.serve_echo`).
"""

from __future__ import annotations

import argparse
import sys

from ioreactor.cli.tls_arguments import add_tls_arguments, tls_server_options
from ioreactor.echo import EchoHandler
from ioreactor.multicore import run_server
from ioreactor.multicore.arguments import add_serving_arguments, serving_options
from ioreactor.net.address import AddressError, parse_address

DEFAULT_LISTEN = "127.0.0.1:7000"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("echo", help="run the echo server (TCP, UDP, Unix)")
    add_serving_arguments(p, DEFAULT_LISTEN, repeat=True)
    add_tls_arguments(p)
    p.add_argument(
        "--sockopt",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="socket option for the listeners, e.g. SO_RCVBUF=65536, TCP_NODELAY=0, "
        "SO_LINGER=0 (repeatable)",
    )
    p.add_argument(
        "--allow-uid",
        type=int,
        action="append",
        default=None,
        metavar="UID",
        help="Unix stream sockets: accept only peers with this uid (SO_PEERCRED; repeatable)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    listens: list[str] = args.listen or [DEFAULT_LISTEN]
    try:
        single_stream = len(listens) == 1 and parse_address(listens[0]).is_stream
    except AddressError as exc:
        print(f"ioreactor echo: {exc}", file=sys.stderr)
        return 2
    tls = tls_server_options(args)
    if single_stream and not args.sockopt and not args.allow_uid:
        args.listen = listens[0]
        return run_server(EchoHandler, **serving_options(args), **tls)
    if tls:
        print("ioreactor echo: TLS serves one stream --listen (no --sockopt, --allow-uid)")
        return 2
    from ioreactor.echo import serve_echo
    from ioreactor.net.sockopt import SockOptError

    try:
        return serve_echo(
            listens,
            sockopts=args.sockopt,
            allowed_uids=args.allow_uid,
            poller=args.poller,
            backlog=args.backlog,
        )
    except (AddressError, SockOptError, ValueError, OSError) as exc:
        print(f"ioreactor echo: {exc}", file=sys.stderr)
        return 2
