"""The server the multicore tests run as a subprocess: ``python server_app.py [flags]``.

It takes the flags of every server command (``--workers``, ``--loops``, ``--dispatch``,
...) and serves a line protocol that lets a test see which process answered and count
requests on both sides:

    pid            -> the serving process's pid
    big            -> BIG_REPLY bytes (output that cannot drain while the client is not reading)
    exit N         -> the serving process exits with code N at once
    anything else  -> the same line back (one request, counted)

Each connection logs ``closed peer=PORT received=N`` when it ends: N is the number of
whole requests the server read from it.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from ioreactor.cli.arguments import add_serving_arguments, serving_options
from ioreactor.multicore import run_server
from ioreactor.net.buffer import Buffer
from ioreactor.net.connection import TcpConnection
from ioreactor.net.handlers import Handler

BIG_REPLY = 8 * 1024 * 1024

log = logging.getLogger("server_app")


class LineServer(Handler):
    def on_connection(self, conn: TcpConnection) -> None:
        conn.context = 0

    def on_message(self, conn: TcpConnection, buffer: Buffer) -> None:
        while (end := buffer.find(b"\n")) >= 0:
            line = buffer.read(end + 1)
            if line == b"pid\n":
                conn.send(b"%d\n" % os.getpid())
            elif line == b"big\n":
                conn.send(b"x" * BIG_REPLY)
            elif line.startswith(b"exit "):
                logging.shutdown()
                os._exit(int(line[5:]))
            else:
                conn.context += 1
                conn.send(line)

    def on_close(self, conn: TcpConnection) -> None:
        port = conn.peer[1] if isinstance(conn.peer, tuple) else conn.peer
        log.info("closed peer=%s received=%d", port, conn.context)


class FailingStart(Handler):
    def __init__(self) -> None:
        raise RuntimeError("this handler cannot start")


def main() -> int:
    parser = argparse.ArgumentParser()
    add_serving_arguments(parser, default_listen="127.0.0.1:0")
    parser.add_argument("--fail-start", action="store_true", help="make_handler raises")
    args = parser.parse_args()
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(process)d %(name)s %(levelname)s: %(message)s",
    )
    make_handler = FailingStart if args.fail_start else LineServer
    return run_server(make_handler, **serving_options(args))


if __name__ == "__main__":
    sys.exit(main())
