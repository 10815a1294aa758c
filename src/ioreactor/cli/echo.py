"""`ioreactor echo`: the echo server over TCP, UDP and Unix sockets.

One stream address (TCP or Unix) runs on the multi-core layer: one loop, sub-reactor
threads or worker processes (the dispatch follows the address: SO_REUSEPORT listeners
for TCP on Linux, fd passing for a Unix socket). Several addresses, a datagram address,
socket options or a peer-credential check run one process with one loop serving every
listener (:func:`ioreactor.echo.serve_echo`); the multi-core flags are then refused, not
ignored.
"""

from __future__ import annotations

import argparse

from ioreactor.cli.arguments import (
    CommandError,
    add_serving_arguments,
    serving_options,
    sockopt,
    uid,
)
from ioreactor.cli.tls_arguments import add_tls_arguments, tls_server_options
from ioreactor.echo import EchoHandler
from ioreactor.multicore import run_server
from ioreactor.net.address import KINDS, Address, parse_address

DEFAULT_LISTEN = "127.0.0.1:7000"
#: Flags of the multi-core layer, and their defaults when not given.
MULTICORE_FLAGS = {"workers": None, "loops": 0, "dispatch": None, "balance": "round-robin"}


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("echo", help="run the echo server (TCP, UDP, Unix)")
    add_serving_arguments(p, DEFAULT_LISTEN, repeat=True, kinds=KINDS)
    add_tls_arguments(p)
    p.add_argument(
        "--sockopt",
        type=sockopt,
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="socket option for the listeners, e.g. SO_RCVBUF=65536, TCP_NODELAY=0, "
        "SO_LINGER=0 (repeatable)",
    )
    p.add_argument(
        "--allow-uid",
        type=uid,
        action="append",
        default=None,
        metavar="UID",
        help="Unix stream sockets: accept only peers with this uid (SO_PEERCRED; repeatable)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    listens: list[Address] = args.listen or [parse_address(DEFAULT_LISTEN)]
    single_stream = len(listens) == 1 and listens[0].is_stream
    tls = tls_server_options(args)
    if single_stream and not args.sockopt and not args.allow_uid:
        args.listen = listens[0]
        return run_server(EchoHandler, **serving_options(args), **tls)
    if tls:
        raise CommandError("echo: TLS serves one stream --listen (no --sockopt, --allow-uid)")
    given = [
        f"--{name}" for name, default in MULTICORE_FLAGS.items() if getattr(args, name) != default
    ]
    if given:
        raise CommandError(
            f"echo: {', '.join(given)} serve(s) one stream address without --sockopt or "
            "--allow-uid; several listeners, datagrams and socket options run in one process"
        )
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
    except (SockOptError, ValueError) as exc:
        raise CommandError(f"echo: {exc}") from None
    except OSError as exc:  # a bind refused: the address is in use, or not ours
        raise CommandError(f"echo: {exc}", status=1) from None
