"""Minimal HTTP/1.1 servers the HTTP benchmark compares ioreactor against.

The smallest idiomatic asyncio ``Protocol`` that parses with httptools (the parser
uvicorn uses) and answers every request with a fixed ``Hello, World!``, honouring
keep-alive; run on asyncio's own loop or on uvloop's. It writes each response as its
request completes (``transport.write`` per response), as such servers do. aiohttp, when
installed, runs its own minimal app. Run one as
``python -m ioreactor_tools.bench.http_peers uvloop-http --port N``.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import signal
import sys
from collections.abc import Sequence
from typing import Any, cast

import httptools

from ioreactor_tools.bench.peers import PEER_BACKLOG, peer_command, uvloop_available

BODY = b"Hello, World!"
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s" % (
    len(BODY),
    BODY,
)
RESPONSE_CLOSE = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n"
    b"Connection: close\r\n\r\n%s" % (len(BODY), BODY)
)
BAD_REQUEST = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"

#: Peer names this module serves.
HTTP_PEERS = ("asyncio-http", "uvloop-http", "aiohttp-http")


class HelloProtocol(asyncio.Protocol):
    """httptools-parsed requests, a fixed response each."""

    transport: asyncio.Transport

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.parser = httptools.HttpRequestParser(self)
        self.url = b""

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.transport.write(BAD_REQUEST)
            self.transport.close()

    def on_url(self, url: bytes) -> None:
        self.url = url

    def on_message_complete(self) -> None:
        if self.parser.should_keep_alive():
            self.transport.write(RESPONSE)
        else:
            self.transport.write(RESPONSE_CLOSE)
            self.transport.close()


async def _serve(host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    server = await loop.create_server(HelloProtocol, host, port, backlog=PEER_BACKLOG)
    async with server:
        await stop.wait()


def aiohttp_available() -> str | None:
    if importlib.util.find_spec("aiohttp") is None:
        return "aiohttp is not installed"
    return None


def _run_aiohttp(host: str, port: int) -> None:  # pragma: no cover - optional peer
    web: Any = importlib.import_module("aiohttp.web")  # optional: no hard dependency

    async def hello(request: Any) -> Any:
        return web.Response(text="Hello, World!")

    app = web.Application()
    app.router.add_get("/", hello)
    web.run_app(app, host=host, port=port, backlog=PEER_BACKLOG, print=None)


def unavailable(name: str) -> str | None:
    """None if peer ``name`` can run here, else why not."""
    if name == "uvloop-http":
        return uvloop_available()
    if name == "aiohttp-http":
        return aiohttp_available()
    return None


def run_http_peer(name: str, host: str, port: int) -> None:
    """Serve until SIGTERM/SIGINT."""
    if name == "uvloop-http":
        import uvloop

        uvloop.run(_serve(host, port))
    elif name == "aiohttp-http":
        _run_aiohttp(host, port)
    else:
        asyncio.run(_serve(host, port))


def http_peer_command(name: str, port: int, host: str = "127.0.0.1") -> list[str]:
    return peer_command("ioreactor_tools.bench.http_peers", name, port, host)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ioreactor_tools.bench.http_peers", description="minimal HTTP servers"
    )
    parser.add_argument("peer", choices=HTTP_PEERS)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    if (reason := unavailable(args.peer)) is not None:
        parser.error(reason)
    run_http_peer(args.peer, args.host, args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
