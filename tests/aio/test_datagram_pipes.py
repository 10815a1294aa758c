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


def test_unix_datagrams_the_peer_has_no_room_for_are_queued_and_leave_in_order(
    aio_loop: Loop, tmp_path: Any
) -> None:
    """A Unix datagram peer that does not read fills up (EAGAIN): sendto() queues the
    rest, and they leave in order once the peer reads; when the peer goes, each queued
    datagram's error reaches error_received and the queue still drains."""
    path = str(tmp_path / "peer.sock")
    count = 200

    async def main() -> None:
        peer = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        peer.bind(path)
        peer.setblocking(False)
        transport, client = await aio_loop.create_datagram_endpoint(
            lambda: Datagrams(aio_loop), remote_addr=path, family=socket.AF_UNIX
        )
        for i in range(count):
            transport.sendto(b"%05d" % i + bytes(1000))
        assert transport.get_write_buffer_size() > 0  # the peer's queue is full
        for i in range(count):
            data = await aio_loop.sock_recv(peer, 2000)
            assert data[:5] == b"%05d" % i and len(data) == 1005
        assert transport.get_write_buffer_size() == 0

        for i in range(count):
            transport.sendto(b"late %d" % i)
        assert transport.get_write_buffer_size() > 0
        peer.close()
        for _ in range(500):
            if not transport.get_write_buffer_size():
                break
            await asyncio.sleep(0.01)
        assert transport.get_write_buffer_size() == 0
        assert isinstance(client.errors[0], ConnectionRefusedError)  # then ENOTCONN
        assert all(isinstance(exc, OSError) for exc in client.errors)
        assert not transport.is_closing()  # a send error is not fatal
        transport.close()
        assert await client.closed is None

    run(aio_loop, main())


def test_writes_after_the_transport_is_lost_are_dropped_and_logged(
    aio_loop: Loop, caplog: Any
) -> None:
    """asyncio's rule for writes to a lost transport, on each writing transport: dropped,
    the first ones silently, then each with a warning."""
    writes = 10

    async def main() -> None:
        a, b = socket.socketpair()
        stream, _ = await aio_loop.connect_accepted_socket(asyncio.Protocol, a)
        udp_peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp_peer.bind(("127.0.0.1", 0))
        datagram, _ = await aio_loop.create_datagram_endpoint(
            asyncio.DatagramProtocol, remote_addr=udp_peer.getsockname()
        )
        rfd, wfd = os.pipe()
        pipe, _ = await aio_loop.connect_write_pipe(asyncio.Protocol, os.fdopen(wfd, "wb", 0))
        for transport in (stream, datagram, pipe):
            transport.abort()
        await asyncio.sleep(0.01)
        for _ in range(writes):
            stream.write(b"lost")
            datagram.sendto(b"lost")
            pipe.write(b"lost")
        await asyncio.sleep(0.01)
        b.setblocking(False)
        udp_peer.setblocking(False)
        for sock in (b, udp_peer):
            try:
                assert sock.recv(100) == b""
            except BlockingIOError:
                pass  # nothing came
        b.close()
        udp_peer.close()
        os.close(rfd)

    with caplog.at_level("WARNING", logger="asyncio"):
        run(aio_loop, main())
    for message in (
        "socket.send() raised exception.",
        "pipe closed by peer or os.write(pipe, data) raised exception.",
    ):
        logged = [r for r in caplog.records if r.getMessage() == message]
        assert 0 < len(logged) < writes * (2 if message.startswith("socket") else 1)
