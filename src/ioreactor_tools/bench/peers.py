"""Minimal reference servers the benchmarks compare ioreactor against.

Each peer is the smallest idiomatic server of its kind -- an asyncio ``Protocol`` that
writes back what it receives -- so a ratio against it measures the framework, not the
application. Run one as ``python -m ioreactor_tools.bench.peers asyncio-echo --port N`` (or
``uvloop-echo``: the same protocol on uvloop's loop). Other benchmarks add their peers in
their own modules and reuse :func:`peer_command`.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import signal
import sys
from collections.abc import Sequence
from typing import cast

#: listen() backlog of every peer, the same as ioreactor's default (asyncio's is 100).
PEER_BACKLOG = 1024


class EchoProtocol(asyncio.Protocol):
    """Writes back every chunk it receives."""

    transport: asyncio.Transport

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)


def uvloop_available() -> str | None:
    """None if uvloop can be used here, else why not."""
    if sys.platform == "win32":
        return "uvloop does not support Windows"
    if importlib.util.find_spec("uvloop") is None:
        return "uvloop is not installed (pip install 'ioreactor[bench]')"
    return None


async def _serve(host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    server = await loop.create_server(EchoProtocol, host, port, backlog=PEER_BACKLOG)
    async with server:
        await stop.wait()


def run_echo_peer(kind: str, host: str, port: int) -> None:
    """Serve echo on ``host:port`` until SIGTERM/SIGINT, on asyncio's loop or uvloop's."""
    if kind == "uvloop-echo":
        import uvloop

        uvloop.run(_serve(host, port))
    else:
        asyncio.run(_serve(host, port))


#: Peer names this module serves.
ECHO_PEERS = ("asyncio-echo", "uvloop-echo")


def peer_command(module: str, name: str, port: int, host: str = "127.0.0.1") -> list[str]:
    """The command line that runs peer ``name`` of ``module`` on ``host:port``."""
    return [sys.executable, "-m", module, name, "--host", host, "--port", str(port)]


def echo_peer_command(name: str, port: int, host: str = "127.0.0.1") -> list[str]:
    return peer_command("ioreactor_tools.bench.peers", name, port, host)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ioreactor_tools.bench.peers", description="minimal reference servers"
    )
    parser.add_argument("peer", choices=ECHO_PEERS)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    if args.peer == "uvloop-echo" and (reason := uvloop_available()) is not None:
        parser.error(reason)
    run_echo_peer(args.peer, args.host, args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
