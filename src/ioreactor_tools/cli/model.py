"""``ioreactor model NAME``: run one of the course's server models on a listener."""

from __future__ import annotations

import argparse
import signal
import socket
import sys
from types import FrameType

from ioreactor.cli.arguments import positive_count, tcp_listen_address
from ioreactor.net.address import Address
from ioreactor.net.sockopt import raise_nofile_limit
from ioreactor_tools.models.base import ModelOptions
from ioreactor_tools.models.handlers import PROTOCOLS
from ioreactor_tools.models.registry import MODELS, create_model


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    models = "; ".join(f"{name}: {spec.summary}" for name, spec in MODELS.items())
    p = subparsers.add_parser(
        "model", help="run one of the course's C10K server models", description=models
    )
    p.add_argument("name", choices=sorted(MODELS), metavar="NAME", help=", ".join(MODELS))
    p.add_argument(
        "--listen",
        type=tcp_listen_address,
        default="127.0.0.1:8080",
        help="HOST:PORT to listen on (default 127.0.0.1:8080; port 0 = any)",
    )
    p.add_argument(
        "--protocol",
        choices=PROTOCOLS,
        default="echo",
        help="echo: bytes back; http: GET / answers Hello, World!",
    )
    p.add_argument(
        "--workers",
        type=positive_count,
        default=8,
        help="thread-pool size; sub-reactor threads of main-sub (default 8)",
    )
    p.add_argument("--backlog", type=positive_count, default=4096, help="listen() backlog")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    raise_nofile_limit()
    address: Address = args.listen
    listener = socket.socket(address.family, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(address.sockaddr)
    listener.listen(args.backlog)
    model = create_model(args.name, ModelOptions(protocol=args.protocol, workers=args.workers))

    def on_signal(signum: int, frame: FrameType | None) -> None:
        model.stop()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    bound = listener.getsockname()
    # One parseable line, flushed, so scripts and tests can learn the port.
    print(f"{args.name} serving {args.protocol} on {bound[0]}:{bound[1]}", flush=True)
    try:
        model.serve(listener)
    finally:
        listener.close()
    print(f"{args.name} stopped", file=sys.stderr)
    return 0
