"""Native ioreactor handlers and asyncio code on one Loop: a Handler starts coroutines
on its connection's loop and awaits drain() for back-pressure."""

from __future__ import annotations

import asyncio
import socket

import pytest
from aio_support import run

import ioreactor.aio
from ioreactor import Buffer, Handler, TcpConnection, TcpServer
from ioreactor.aio import Loop


class AsyncAnswer(Handler):
    """Each line is answered by a coroutine: an await, then a reply and a drain."""

    def __init__(self) -> None:
        self.drained: list[int] = []

    def on_message(self, conn: TcpConnection, buffer: Buffer) -> None:
        while (end := buffer.find_eol()) >= 0:
            line = buffer.read(end + 1)
            ioreactor.aio.start(conn, self.answer(conn, line))

    async def answer(self, conn: TcpConnection, line: bytes) -> None:
        await asyncio.sleep(0.001)  # any asyncio work
        size = int(line)
        conn.send(b"x" * size)
        await ioreactor.aio.drain(conn)
        self.drained.append(conn.output_size)


def test_a_native_server_and_asyncio_clients_share_the_loop(aio_loop: Loop) -> None:
    handler = AsyncAnswer()
    server = TcpServer(aio_loop.reactor, "127.0.0.1:0", handler).start()

    async def main() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"10\n5\n")
        assert await reader.readexactly(15) == b"x" * 15
        big = 8 * 1024 * 1024  # far above the socket buffers: drain() really waits
        writer.write(b"%d\n" % big)
        await asyncio.sleep(0.1)
        assert len(handler.drained) == 2  # the big reply is still queued
        got = 0
        while got < big:
            got += len(await reader.read(1 << 20))
        for _ in range(100):
            if len(handler.drained) == 3:
                break
            await asyncio.sleep(0.01)
        assert handler.drained == [0, 0, 0]
        writer.close()
        await writer.wait_closed()

    try:
        run(aio_loop, main())
    finally:
        server.close()


def test_drain_raises_when_the_connection_closes_with_output_queued(aio_loop: Loop) -> None:
    errors: list[BaseException] = []

    class Stuck(Handler):
        def on_connection(self, conn: TcpConnection) -> None:
            conn.send(b"y" * (8 * 1024 * 1024))
            ioreactor.aio.start(conn, self.wait(conn))

        async def wait(self, conn: TcpConnection) -> None:
            try:
                await ioreactor.aio.drain(conn)
            except ConnectionResetError as exc:
                errors.append(exc)

    server = TcpServer(aio_loop.reactor, "127.0.0.1:0", Stuck()).start()

    async def main() -> None:
        peer = socket.create_connection(("127.0.0.1", server.port))
        await asyncio.sleep(0.1)
        for conn in server.connections:
            conn.force_close()  # closed with megabytes unsent
        for _ in range(300):
            if errors:
                break
            await asyncio.sleep(0.01)
        peer.close()

    try:
        run(aio_loop, main())
    finally:
        server.close()
    assert len(errors) == 1


def test_loop_of_a_plain_reactor_says_it_has_no_asyncio_loop() -> None:
    from ioreactor import EventLoop

    reactor = EventLoop()
    try:
        with pytest.raises(RuntimeError, match="not driven"):
            ioreactor.aio.loop_of(reactor)
    finally:
        reactor.close()
