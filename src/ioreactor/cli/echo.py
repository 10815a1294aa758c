"""`ioreactor echo`: the TCP echo server."""

from __future__ import annotations

import argparse
import logging
import signal

from ioreactor.echo import EchoHandler
from ioreactor.loop.event_loop import EventLoop
from ioreactor.loop.poller import available_pollers
from ioreactor.net.server import TcpServer
from ioreactor.net.sockopt import raise_nofile_limit

log = logging.getLogger("ioreactor.echo")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("echo", help="run the TCP echo server")
    p.add_argument("--listen", default="127.0.0.1:7000", help="HOST:PORT (default %(default)s)")
    p.add_argument(
        "--poller",
        choices=available_pollers(),
        default=None,
        help="I/O multiplexing backend (default: the best this OS has)",
    )
    p.add_argument("--backlog", type=int, default=1024, help="listen() backlog")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    raise_nofile_limit()
    loop = EventLoop(args.poller, name="echo")
    server = TcpServer(loop, args.listen, EchoHandler(), backlog=args.backlog).start()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, loop.stop)
    log.info("echo server on %s (poller %s)", server.sockname, loop.poller.name)
    loop.run()
    server.close()
    loop.close()
    return 0
