"""`ioreactor heartbeat serve|connect`: the heartbeat demo, every ping, pong and verdict logged.

Try it: start ``serve`` and ``connect`` in two terminals, then ``kill -STOP`` one of
them -- the other declares it dead after ``misses`` unanswered pings -- and ``kill
-CONT`` it, or stop and restart the server: the client reconnects with back-off.
"""

from __future__ import annotations

import argparse
import logging
import signal

from ioreactor.cli.arguments import (
    keepalive_timers,
    positive_count,
    seconds,
    tcp_connect_address,
    tcp_listen_address,
)
from ioreactor.cli.tls_arguments import add_tls_arguments, tls_client_options, tls_server_options
from ioreactor.heartbeat import INTERVAL, MISSES, HeartbeatHandler
from ioreactor.loop.backends import new_loop
from ioreactor.loop.event_loop import EventLoop
from ioreactor.loop.poller import available_pollers
from ioreactor.net.address import format_sockname
from ioreactor.net.client import TcpClient
from ioreactor.net.connection import TcpConnection
from ioreactor.net.server import TcpServer
from ioreactor.net.sockopt import raise_nofile_limit

log = logging.getLogger("ioreactor.heartbeat")

#: Longest pause between reconnect attempts in the demo client.
BACKOFF_MAX = 5.0


class DemoServer(HeartbeatHandler):
    """Answers pings, echoes DATA frames, and says when peers come and go."""

    def on_connection(self, conn: TcpConnection) -> None:
        super().on_connection(conn)
        log.info("connection from %s", conn.peer)

    def on_close(self, conn: TcpConnection) -> None:
        super().on_close(conn)
        log.info("connection from %s closed%s", conn.peer, _reason(conn))

    def on_data(self, conn: TcpConnection, payload: bytes) -> None:
        log.info("data from %s: %r (echoed)", conn.peer, payload)
        self.send_data(conn, payload)


class DemoClient(HeartbeatHandler):
    """Pings when the server is quiet; optionally sends DATA on a timer."""

    def __init__(self, interval: float, misses: int) -> None:
        super().__init__(interval, misses, active=True, log_traffic=_log_traffic())
        self.connection: TcpConnection | None = None
        self.sent = 0

    def on_connection(self, conn: TcpConnection) -> None:
        super().on_connection(conn)
        self.connection = conn
        log.info("connected to %s", conn.peer)

    def on_close(self, conn: TcpConnection) -> None:
        super().on_close(conn)
        if self.connection is conn:
            self.connection = None
        log.info("connection to %s closed%s", conn.peer, _reason(conn))

    def on_data(self, conn: TcpConnection, payload: bytes) -> None:
        log.info("data echoed by %s: %r", conn.peer, payload)

    def send_tick(self) -> None:
        conn = self.connection
        if conn is not None and conn.connected:
            self.sent += 1
            self.send_data(conn, b"data %d" % self.sent)


def _log_traffic() -> bool:
    """Log every PING and PONG unless the log level hides INFO (e.g. for benchmarks)."""
    return log.isEnabledFor(logging.INFO)


def _reason(conn: TcpConnection) -> str:
    return f": {conn.error}" if conn.error is not None else ""


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--interval",
        type=seconds,
        default=INTERVAL,
        help="seconds of silence before a PING (default %(default)s)",
    )
    p.add_argument(
        "--misses",
        type=positive_count,
        default=MISSES,
        help="unanswered PINGs before the peer is declared dead (default %(default)s)",
    )
    p.add_argument(
        "--keepalive",
        type=keepalive_timers,
        default=None,
        metavar="IDLE:INTERVAL:COUNT",
        help="also enable kernel TCP keepalive with these timers (e.g. 60:10:3)",
    )
    p.add_argument(
        "--duration",
        type=seconds,
        default=None,
        help="exit after this many seconds (default: run until SIGINT/SIGTERM)",
    )
    p.add_argument("--poller", choices=available_pollers(), default=None)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "heartbeat", help="application-level heartbeat demo (PING/PONG, dead-peer verdict)"
    )
    sub = p.add_subparsers(dest="heartbeat_command", metavar="ROLE", required=True)
    serve = sub.add_parser("serve", help="heartbeat server: answers pings, detects dead clients")
    serve.add_argument(
        "--listen",
        type=tcp_listen_address,
        default="127.0.0.1:7100",
        help="HOST:PORT (%(default)s)",
    )
    _common(serve)
    add_tls_arguments(serve)
    serve.set_defaults(func=run_serve)
    connect = sub.add_parser("connect", help="heartbeat client: pings, reconnects with back-off")
    connect.add_argument(
        "--connect",
        type=tcp_connect_address,
        default="127.0.0.1:7100",
        help="HOST:PORT (%(default)s)",
    )
    connect.add_argument(
        "--data-every",
        type=seconds,
        default=None,
        metavar="S",
        help="send a DATA frame every S seconds (data counts as liveness: fewer pings)",
    )
    _common(connect)
    add_tls_arguments(connect, server=False)
    connect.set_defaults(func=run_connect)


def _run(loop: EventLoop, duration: float | None) -> None:
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(sig, loop.stop)
    if duration is not None:
        loop.call_later(duration, loop.stop)
    loop.run()


def run_serve(args: argparse.Namespace) -> int:
    raise_nofile_limit()
    tls = tls_server_options(args)
    loop = new_loop(args.poller, name="heartbeat-server")
    handler = DemoServer(args.interval, args.misses, active=False, log_traffic=_log_traffic())
    server = TcpServer(loop, args.listen, handler, keepalive=args.keepalive, **tls).start()
    log.info(
        "heartbeat server on %s (interval %g s, misses %d, dead after %g-%g s of silence%s)",
        format_sockname("tcp", server.sockname).removeprefix("tcp://"),
        args.interval,
        args.misses,
        args.interval * args.misses,
        args.interval * (args.misses + 1),
        f", TCP keepalive {args.keepalive}" if args.keepalive else "",
    )
    try:
        _run(loop, args.duration)
    finally:
        server.close()
        loop.close()
    return 0


def run_connect(args: argparse.Namespace) -> int:
    tls = tls_client_options(args)
    loop = new_loop(args.poller, name="heartbeat-client")
    handler = DemoClient(args.interval, args.misses)
    client = TcpClient(
        loop,
        args.connect,
        handler,
        retry=True,
        reconnect=True,
        backoff_max=BACKOFF_MAX,
        keepalive=args.keepalive,
        **tls,
    ).connect()
    if args.data_every is not None:
        loop.call_every(args.data_every, handler.send_tick)
    log.info(
        "heartbeat client to %s (interval %g s, misses %d)",
        args.connect,
        args.interval,
        args.misses,
    )
    try:
        _run(loop, args.duration)
    finally:
        client.stop()
        if handler.connection is not None:
            handler.connection.force_close()
        loop.close()
    return 0
