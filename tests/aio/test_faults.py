"""Faults on ioreactor.aio: each is survived by the loop and seen by the protocol."""

from __future__ import annotations

import asyncio
import os
import resource
import socket
import warnings
from typing import Any

import pytest
from aio_support import run

from ioreactor.aio import Loop, new_event_loop


class Recorder(asyncio.Protocol):
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.lost: asyncio.Future[BaseException | None] = loop.create_future()
        self.data = b""

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.data += data

    def connection_lost(self, exc: BaseException | None) -> None:
        self.lost.set_result(exc)


def test_a_raising_protocol_method_goes_to_the_handler_and_closes_only_its_connection(
    aio_loop: Loop,
) -> None:
    contexts: list[dict[str, Any]] = []
    aio_loop.set_exception_handler(lambda loop, ctx: contexts.append(ctx))

    class Bad(Recorder):
        def data_received(self, data: bytes) -> None:
            if data == b"boom":
                raise ValueError("bad input")
            self.transport.write(data)

    async def main() -> None:
        protos: list[Bad] = []
        server = await aio_loop.create_server(
            lambda: protos.append(Bad(aio_loop)) or protos[-1], "127.0.0.1", 0
        )
        port = server.sockets[0].getsockname()[1]
        r1, w1 = await asyncio.open_connection("127.0.0.1", port)
        r2, w2 = await asyncio.open_connection("127.0.0.1", port)
        w1.write(b"boom")
        assert await r1.read() == b""  # its connection was closed
        w2.write(b"fine")
        assert await r2.readexactly(4) == b"fine"  # the other one goes on
        assert isinstance(await protos[0].lost, ValueError)
        assert not protos[1].lost.done()
        w1.close()
        w2.close()
        server.close()
        await server.wait_closed()

    run(aio_loop, main())
    assert len(contexts) == 1
    assert "data_received" in contexts[0]["message"]
    assert isinstance(contexts[0]["exception"], ValueError)


def test_connection_reset_mid_write_reaches_connection_lost(aio_loop: Loop) -> None:
    async def main() -> None:
        a, b = socket.socketpair()
        transport, proto = await aio_loop.connect_accepted_socket(lambda: Recorder(aio_loop), a)
        transport.write(b"x" * (4 * 1024 * 1024))  # more than the socket buffers hold
        await asyncio.sleep(0.05)
        assert transport.get_write_buffer_size() > 0
        b.close()  # the peer goes away with our output still queued
        exc = await proto.lost
        assert isinstance(exc, (ConnectionResetError, BrokenPipeError))
        assert transport.is_closing()

    run(aio_loop, main())


def test_peer_closing_with_unread_data_ends_the_connection(aio_loop: Loop) -> None:
    """A TCP peer that closes with our reply unread sends RST: its last bytes still
    arrive, then connection_lost (reset, or None when the FIN won the race)."""

    async def main() -> None:
        protos: list[Recorder] = []
        server = await aio_loop.create_server(
            lambda: protos.append(Recorder(aio_loop)) or protos[-1], "127.0.0.1", 0
        )
        peer = socket.create_connection(server.sockets[0].getsockname())
        peer.sendall(b"last")
        for _ in range(200):
            if protos and protos[0].data == b"last":
                break
            await asyncio.sleep(0.01)
        protos[0].transport.write(b"a reply the peer never reads")
        await asyncio.sleep(0.05)
        peer.close()  # unread data in its receive queue: the kernel sends RST
        exc = await protos[0].lost
        assert protos[0].data == b"last"
        assert exc is None or isinstance(exc, ConnectionResetError)
        server.close()
        await server.wait_closed()

    run(aio_loop, main())


def test_transport_closed_twice_and_aborted_after_close(aio_loop: Loop) -> None:
    async def main() -> None:
        a, b = socket.socketpair()
        transport, proto = await aio_loop.connect_accepted_socket(lambda: Recorder(aio_loop), a)
        transport.close()
        transport.close()
        transport.abort()
        assert await proto.lost is None
        transport.close()
        transport.write(b"ignored after close")
        b.close()

    run(aio_loop, main())


def test_loop_closed_with_an_open_transport_warns_resource_warning() -> None:
    loop = new_event_loop()
    a, b = socket.socketpair()
    transport, _ = loop.run_until_complete(loop.connect_accepted_socket(asyncio.Protocol, a))
    shown = repr(transport)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loop.close()
    assert [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)] == [
        f"unclosed transport {shown}"
    ]
    assert a.fileno() == -1  # and its socket was closed
    b.close()


def test_cancelled_sock_calls_leave_no_fd_watched(aio_loop: Loop) -> None:
    async def main() -> None:
        a, b = socket.socketpair()
        a.setblocking(False)
        listener = socket.create_server(("127.0.0.1", 0))
        listener.setblocking(False)
        base = aio_loop.reactor.watched_fds()
        for call in (
            aio_loop.sock_recv(a, 10),
            aio_loop.sock_recv_into(a, bytearray(10)),
            aio_loop.sock_accept(listener),
        ):
            task = asyncio.ensure_future(call)
            await asyncio.sleep(0.01)
            assert aio_loop.reactor.watched_fds() == base + 1
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert aio_loop.reactor.watched_fds() == base
        b.send(b"still works")
        assert await aio_loop.sock_recv(a, 100) == b"still works"
        for s in (a, b, listener):
            s.close()

    run(aio_loop, main())


def test_emfile_on_accept_sheds_connections_and_the_server_recovers() -> None:
    loop = new_event_loop()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)

    async def main() -> None:
        server = await loop.create_server(lambda: Recorder(loop), "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        hog: list[int] = []
        clients: list[socket.socket] = []
        try:
            clients = [socket.socket() for _ in range(5)]  # made before the fds run out
            while True:
                try:
                    hog.append(os.open(os.devnull, os.O_RDONLY))
                except OSError:
                    break
            for c in clients:
                c.setblocking(False)
                c.connect_ex(("127.0.0.1", port))
            shed = 0
            for _ in range(200):
                await asyncio.sleep(0.01)
                shed = sum(_closed_by_peer(c) for c in clients)
                if shed == len(clients):
                    break
            assert shed == len(clients)  # each was accepted with the spare fd and closed
        finally:
            for fd in hog:
                os.close(fd)
            for c in clients:
                c.close()
        _, writer = await asyncio.open_connection("127.0.0.1", port)  # accepted again
        writer.write(b"after")
        await writer.drain()
        writer.close()
        server.close()
        await server.wait_closed()

    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
        run(loop, main())
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        loop.close()


def _closed_by_peer(sock: socket.socket) -> bool:
    try:
        return sock.recv(1) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True
