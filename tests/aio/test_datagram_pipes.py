"""Datagram endpoints (UDP, Unix datagram), low-level datagram calls, pipes and
subprocesses on ioreactor.aio, on every backend."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from typing import Any

from aio_support import run

from ioreactor.aio import Loop


class Datagrams(asyncio.DatagramProtocol):
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.queue: asyncio.Queue[tuple[bytes, Any]] = asyncio.Queue()
        self.errors: list[Exception] = []
        self.closed = loop.create_future()

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.queue.put_nowait((data, addr))

    def error_received(self, exc: Exception) -> None:
        self.errors.append(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed.set_result(exc)


class UdpEcho(Datagrams):
    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.transport.sendto(data.upper(), addr)


def test_udp_echo_and_connected_errors(aio_loop: Loop) -> None:
    async def main() -> None:
        server_t, _ = await aio_loop.create_datagram_endpoint(
            lambda: UdpEcho(aio_loop), local_addr=("127.0.0.1", 0)
        )
        address = server_t.get_extra_info("sockname")
        client_t, client = await aio_loop.create_datagram_endpoint(
            lambda: Datagrams(aio_loop), remote_addr=address
        )
        for i in range(20):
            client_t.sendto(b"ping %d" % i)
            data, addr = await client.queue.get()
            assert data == b"PING %d" % i and addr == address
        server_t.close()
        await asyncio.sleep(0.05)
        client_t.sendto(b"nobody listens")  # ICMP port unreachable comes back
        for _ in range(100):
            if client.errors:
                break
            await asyncio.sleep(0.01)
        assert isinstance(client.errors[0], ConnectionRefusedError)
        client_t.close()
        assert await client.closed is None

    run(aio_loop, main())


def test_unix_datagram_endpoints(aio_loop: Loop, tmp_path: Any) -> None:
    server_path, client_path = str(tmp_path / "s.sock"), str(tmp_path / "c.sock")

    async def main() -> None:
        server_t, _ = await aio_loop.create_datagram_endpoint(
            lambda: UdpEcho(aio_loop), local_addr=server_path, family=socket.AF_UNIX
        )
        client_t, client = await aio_loop.create_datagram_endpoint(
            lambda: Datagrams(aio_loop),
            local_addr=client_path,
            remote_addr=server_path,
            family=socket.AF_UNIX,
        )
        big = os.urandom(100_000)  # above UDP's limit: fine for Unix datagrams
        client_t.sendto(big)
        data, _ = await client.queue.get()
        assert data == big.upper()
        client_t.close()
        server_t.close()

    run(aio_loop, main())


def test_sock_sendto_and_recvfrom(aio_loop: Loop) -> None:
    async def main() -> None:
        a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for s in (a, b):
            s.setblocking(False)
            s.bind(("127.0.0.1", 0))
        receiving = asyncio.ensure_future(aio_loop.sock_recvfrom(b, 100))
        await asyncio.sleep(0.01)
        assert await aio_loop.sock_sendto(a, b"hello", b.getsockname()) == 5
        assert await receiving == (b"hello", a.getsockname())
        buf = bytearray(100)
        await aio_loop.sock_sendto(a, b"into", b.getsockname())
        n, addr = await aio_loop.sock_recvfrom_into(b, buf)
        assert bytes(buf[:n]) == b"into" and addr == a.getsockname()
        a.close()
        b.close()

    run(aio_loop, main())


def test_pipes(aio_loop: Loop) -> None:
    class Collect(asyncio.Protocol):
        def __init__(self) -> None:
            self.data = b""
            self.eof = aio_loop.create_future()

        def data_received(self, data: bytes) -> None:
            self.data += data

        def eof_received(self) -> None:
            self.eof.set_result(self.data)

    async def main() -> None:
        rfd, wfd = os.pipe()
        reader_t, reader = await aio_loop.connect_read_pipe(Collect, os.fdopen(rfd, "rb", 0))
        writer_t, _ = await aio_loop.connect_write_pipe(asyncio.Protocol, os.fdopen(wfd, "wb", 0))
        payload = os.urandom(1 << 20)  # more than a pipe holds: the writer waits
        writer_t.write(payload)
        writer_t.close()
        assert await reader.eof == payload
        reader_t.close()

    run(aio_loop, main())


def test_subprocesses_are_watched_through_their_pidfd(aio_loop: Loop) -> None:
    async def main() -> None:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            "import sys; sys.stdout.write(sys.stdin.read().upper())",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        out, _ = await proc.communicate(b"from the parent")
        assert out == b"FROM THE PARENT" and proc.returncode == 0
        sleeper = await asyncio.create_subprocess_shell("sleep 30")
        sleeper.kill()
        assert await sleeper.wait() == -signal.SIGKILL

    run(aio_loop, main(), timeout=30)
    assert signal.getsignal(signal.SIGCHLD) == signal.SIG_DFL  # no SIGCHLD watcher
