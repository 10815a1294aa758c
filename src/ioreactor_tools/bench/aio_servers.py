"""The asyncio programs ``ioreactor bench aio`` runs, each on a loop of choice.

One program, three loops: the same code on ioreactor.aio's loop, on stdlib asyncio's and
on uvloop's, so a ratio measures the loop alone. Run one as::

    python -m ioreactor_tools.bench.aio_servers protocol-echo --loop ioreactor --port N

``protocol-echo``  an asyncio ``Protocol`` writing back each chunk it receives
``streams-echo``   ``start_server`` with a StreamReader/StreamWriter echo loop
``aiohttp-hello``  an aiohttp app answering ``GET /`` with "Hello, World!"
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import signal
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, cast

from ioreactor_tools.bench.peers import PEER_BACKLOG, EchoProtocol, uvloop_available

#: Workload -> what the load generator speaks to it.
WORKLOADS = {"protocol-echo": "echo", "streams-echo": "echo", "aiohttp-hello": "http"}
#: The loops compared; the first is the one under test.
LOOPS = ("ioreactor", "asyncio", "uvloop")
#: Bytes a streams echo reads at a time.
STREAM_READ = 64 * 1024


async def _until_signalled() -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


async def protocol_echo(host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(EchoProtocol, host, port, backlog=PEER_BACKLOG)
    async with server:
        await _until_signalled()


async def _echo_stream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(STREAM_READ):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


async def streams_echo(host: str, port: int) -> None:
    server = await asyncio.start_server(_echo_stream, host, port, backlog=PEER_BACKLOG)
    async with server:
        await _until_signalled()


async def aiohttp_hello(host: str, port: int) -> None:
    web: Any = importlib.import_module("aiohttp.web")  # a test/bench dependency only

    async def hello(request: Any) -> Any:
        return web.Response(text="Hello, World!")

    app = web.Application()
    app.router.add_get("/", hello)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=PEER_BACKLOG)
    await site.start()
    try:
        await _until_signalled()
    finally:
        await runner.cleanup()


PROGRAMS: dict[str, Callable[[str, int], Coroutine[Any, Any, None]]] = {
    "protocol-echo": protocol_echo,
    "streams-echo": streams_echo,
    "aiohttp-hello": aiohttp_hello,
}


def unavailable(workload: str, loop: str) -> str | None:
    """None if ``workload`` can run on ``loop`` here, else why not."""
    if loop == "uvloop" and (reason := uvloop_available()) is not None:
        return reason
    if workload == "aiohttp-hello" and importlib.util.find_spec("aiohttp") is None:
        return "aiohttp is not installed (pip install aiohttp)"
    return None


def run_program(workload: str, loop: str, host: str, port: int, poller: str | None) -> None:
    """Serve ``workload`` on ``loop`` until SIGTERM/SIGINT."""
    main = PROGRAMS[workload](host, port)
    if loop == "ioreactor":
        import ioreactor.aio

        ioreactor.aio.run(main, poller=poller)
    elif loop == "uvloop":
        uvloop = cast(Any, importlib.import_module("uvloop"))
        uvloop.run(main)
    else:
        asyncio.run(main)


def server_command(
    workload: str, loop: str, port: int, poller: str | None = None, host: str = "127.0.0.1"
) -> list[str]:
    """The command line that serves ``workload`` on ``loop`` at ``host:port``."""
    command = [sys.executable, "-m", "ioreactor_tools.bench.aio_servers", workload]
    command += ["--loop", loop, "--host", host, "--port", str(port)]
    return [*command, "--poller", poller] if poller else command


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ioreactor_tools.bench.aio_servers",
        description="asyncio programs on ioreactor.aio, asyncio or uvloop",
    )
    parser.add_argument("workload", choices=tuple(PROGRAMS))
    parser.add_argument("--loop", choices=LOOPS, default="ioreactor")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--poller", default=None, help="ioreactor.aio's backend")
    args = parser.parse_args(argv)
    if (reason := unavailable(args.workload, args.loop)) is not None:
        parser.error(reason)
    run_program(args.workload, args.loop, args.host, args.port, args.poller)
    return 0


if __name__ == "__main__":
    sys.exit(main())
