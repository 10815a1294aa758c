"""Stream transports on TcpConnection: TCP and Unix echo, back-pressure, half-close,
BufferedProtocol, sendfile, TLS (asyncio's sslproto), on every backend."""

from __future__ import annotations

import asyncio
import io
import os
import socket
import ssl
import tempfile
from collections.abc import Iterator
from typing import Any

import pytest
import trustme
from aio_support import run

from ioreactor.aio import Loop, new_event_loop


class Echo(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: Any = transport

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)


async def echo_roundtrips(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    payload = os.urandom(1024)
    for _ in range(50):
        writer.write(payload)
        await writer.drain()
        assert await reader.readexactly(len(payload)) == payload
    big = os.urandom(3 * 1024 * 1024)
    reading = asyncio.ensure_future(reader.readexactly(len(big)))  # or both sides block
    writer.write(big)
    await writer.drain()
    assert await reading == big
    writer.close()
    await writer.wait_closed()


def test_tcp_protocol_server_and_streams_client_echo_every_byte(aio_loop: Loop) -> None:
    async def main() -> None:
        server = await aio_loop.create_server(Echo, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        assert writer.get_extra_info("peername") == ("127.0.0.1", port)
        await echo_roundtrips(reader, writer)
        server.close()
        await server.wait_closed()
        assert not server.is_serving()

    run(aio_loop, main(), timeout=30)


def test_unix_streams_server_and_client(aio_loop: Loop, tmp_path: Any) -> None:
    path = str(tmp_path / "echo.sock")

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        writer.close()

    async def main() -> None:
        server = await asyncio.start_unix_server(handle, path)
        reader, writer = await asyncio.open_unix_connection(path)
        await echo_roundtrips(reader, writer)
        server.close()
        await server.wait_closed()

    run(aio_loop, main(), timeout=30)


def test_write_buffer_limits_pause_and_resume_writing(aio_loop: Loop) -> None:
    events: list[str] = []

    class Writer(asyncio.Protocol):
        def connection_made(self, transport: Any) -> None:
            self.transport = transport
            transport.set_write_buffer_limits(high=64 * 1024)
            assert transport.get_write_buffer_limits() == (16 * 1024, 64 * 1024)

        def pause_writing(self) -> None:
            events.append("pause")

        def resume_writing(self) -> None:
            events.append("resume")

    async def main() -> None:
        listener = socket.create_server(("127.0.0.1", 0))
        listener.setblocking(False)
        transport, _ = await aio_loop.create_connection(Writer, *listener.getsockname())
        peer, _ = await aio_loop.sock_accept(listener)
        transport.write(b"x" * (1024 * 1024))  # far more than the peer's buffers take
        assert events == ["pause"]
        assert transport.get_write_buffer_size() > 64 * 1024
        got = 0
        while got < 1024 * 1024:
            got += len(await aio_loop.sock_recv(peer, 1 << 20))
        for _ in range(100):
            if "resume" in events:
                break
            await asyncio.sleep(0.01)
        assert events == ["pause", "resume"]
        transport.close()
        peer.close()
        listener.close()

    run(aio_loop, main())


def test_pause_reading_stops_data_received_until_resumed(aio_loop: Loop) -> None:
    received: list[bytes] = []

    class Reader(asyncio.Protocol):
        def connection_made(self, transport: Any) -> None:
            self.transport = transport

        def data_received(self, data: bytes) -> None:
            received.append(data)

    async def main() -> None:
        a, b = socket.socketpair()
        transport, _ = await aio_loop.connect_accepted_socket(Reader, a)
        transport.pause_reading()
        assert not transport.is_reading()
        b.send(b"held")
        await asyncio.sleep(0.05)
        assert received == []
        transport.resume_reading()
        for _ in range(100):
            if received:
                break
            await asyncio.sleep(0.01)
        assert b"".join(received) == b"held"
        transport.close()
        b.close()

    run(aio_loop, main())


def test_write_eof_half_closes_after_the_output_drains(aio_loop: Loop) -> None:
    class HalfCloser(asyncio.Protocol):
        def connection_made(self, transport: Any) -> None:
            transport.write(b"last words")
            assert transport.can_write_eof()
            transport.write_eof()
            with pytest.raises(RuntimeError, match="write_eof"):
                transport.write(b"more")

        def data_received(self, data: bytes) -> None:
            self.got = data

    async def main() -> None:
        a, b = socket.socketpair()
        b.setblocking(False)
        transport, proto = await aio_loop.connect_accepted_socket(HalfCloser, a)
        data = b""
        while chunk := await aio_loop.sock_recv(b, 100):
            data += chunk
        assert data == b"last words"  # then EOF: our side still reads
        await aio_loop.sock_sendall(b, b"reply")
        for _ in range(100):
            if getattr(proto, "got", None):
                break
            await asyncio.sleep(0.01)
        assert proto.got == b"reply"
        transport.close()
        b.close()

    run(aio_loop, main())


def test_buffered_protocol_reads_into_its_own_buffer(aio_loop: Loop) -> None:
    class Buffered(asyncio.BufferedProtocol):
        def __init__(self) -> None:
            self.buf = bytearray(100)  # smaller than one read: several get_buffer calls
            self.data = bytearray()
            self.done = aio_loop.create_future()

        def get_buffer(self, sizehint: int) -> bytearray:
            return self.buf

        def buffer_updated(self, nbytes: int) -> None:
            self.data += self.buf[:nbytes]

        def eof_received(self) -> None:
            self.done.set_result(bytes(self.data))

    async def main() -> None:
        a, b = socket.socketpair()
        transport, proto = await aio_loop.connect_accepted_socket(Buffered, a)
        payload = os.urandom(100_000)
        b.sendall(payload)
        b.shutdown(socket.SHUT_WR)
        assert await proto.done == payload
        transport.close()
        b.close()

    run(aio_loop, main())


def test_loop_sendfile_sends_the_file_range(aio_loop: Loop) -> None:
    content = os.urandom(3 * 1024 * 1024 + 17)

    async def main() -> None:
        a, b = socket.socketpair()
        b.setblocking(False)
        transport, _ = await aio_loop.connect_accepted_socket(asyncio.Protocol, a)
        with tempfile.TemporaryFile() as f:
            f.write(content)
            f.flush()
            transport.write(b"head:")
            sending = asyncio.ensure_future(aio_loop.sendfile(transport, f, 100, len(content)))
            want = 5 + len(content) - 100
            data = b""
            while len(data) < want:
                data += await aio_loop.sock_recv(b, 1 << 20)
            assert await sending == len(content) - 100
            assert f.tell() == len(content)
        assert data == b"head:" + content[100:]
        transport.close()
        b.close()

    run(aio_loop, main(), timeout=30)


@pytest.mark.parametrize("offset, count", [(0, None), (100, 300_000)])
@pytest.mark.parametrize("through", ["transport", "socket"])
def test_sendfile_copies_what_it_cannot_send_natively(
    aio_loop: Loop, through: str, offset: int, count: int | None
) -> None:
    """A file without an fd (BytesIO) goes by the read-and-write fallback, through a
    transport (``loop.sendfile``) or a socket (``loop.sock_sendfile``): the range asked
    for, in chunks, and the file's position left after it."""
    content = os.urandom(700_000)  # several chunks of either fallback
    end = len(content) if count is None else offset + count

    async def main() -> None:
        a, b = socket.socketpair()
        a.setblocking(False)
        b.setblocking(False)
        file = io.BytesIO(content)
        if through == "transport":
            transport, _ = await aio_loop.connect_accepted_socket(asyncio.Protocol, a)
            sending = asyncio.ensure_future(aio_loop.sendfile(transport, file, offset, count))
        else:
            sending = asyncio.ensure_future(aio_loop.sock_sendfile(a, file, offset, count))
        data = b""
        while len(data) < end - offset:
            data += await aio_loop.sock_recv(b, 1 << 20)
        assert await sending == end - offset
        assert data == content[offset:end] and file.tell() == end
        if through == "transport":
            transport.close()
        else:
            a.close()
        b.close()

    run(aio_loop, main(), timeout=30)


@pytest.fixture(scope="module")
def tls() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    return server_ctx, client_ctx


def test_tls_streams_and_start_tls(
    aio_loop: Loop, tls: tuple[ssl.SSLContext, ssl.SSLContext]
) -> None:
    server_ctx, client_ctx = tls

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        line = await reader.readline()
        if line == b"STARTTLS\n":
            writer.write(b"OK\n")
            await writer.drain()
            await writer.start_tls(server_ctx)
            line = await reader.readline()
        writer.write(line.upper())
        await writer.drain()
        writer.close()

    async def main() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=server_ctx)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=client_ctx, server_hostname="localhost"
        )
        assert writer.get_extra_info("ssl_object").version().startswith("TLS")
        writer.write(b"secret\n")
        assert await reader.readline() == b"SECRET\n"
        writer.close()
        await writer.wait_closed()
        server.close()
        await server.wait_closed()

        plain = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = plain.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"STARTTLS\n")
        assert await reader.readline() == b"OK\n"
        await writer.start_tls(client_ctx, server_hostname="localhost")
        writer.write(b"upgraded\n")
        assert await reader.readline() == b"UPGRADED\n"
        writer.close()
        await writer.wait_closed()
        plain.close()
        await plain.wait_closed()

    run(aio_loop, main(), timeout=30)


def test_every_call_checks_its_ssl_arguments_alike(aio_loop: Loop, tmp_path: Any) -> None:
    """TLS timeouts without ssl are refused by every call taking them, and ssl=True (a
    client context) by both servers, before any socket is touched."""
    path = str(tmp_path / "never.sock")

    async def main() -> None:
        with socket.socket() as accepted:
            calls = {
                "create_connection": (aio_loop.create_connection, ("127.0.0.1", 9)),
                "create_unix_connection": (aio_loop.create_unix_connection, (path,)),
                "connect_accepted_socket": (aio_loop.connect_accepted_socket, (accepted,)),
                "create_server": (aio_loop.create_server, ("127.0.0.1", 0)),
                "create_unix_server": (aio_loop.create_unix_server, (path,)),
            }
            for name, (call, args) in calls.items():
                for timeout in ("ssl_handshake_timeout", "ssl_shutdown_timeout"):
                    with pytest.raises(ValueError, match=f"{timeout} is only meaningful"):
                        await call(asyncio.Protocol, *args, **{timeout: 1.0})
                if name.endswith("server"):
                    with pytest.raises(TypeError, match="must be an SSLContext or None"):
                        await call(asyncio.Protocol, *args, ssl=True)
        assert not os.path.exists(path)

    run(aio_loop, main())


#: The TLS timeouts the tests below set: far below asyncio's defaults (60 s handshake,
#: 30 s shutdown), so a timeout that does not reach the SSL protocol fails the test.
SHORT_TLS_TIMEOUT = 0.3


@pytest.fixture
def default_loop() -> Iterator[Loop]:
    """One Loop on the default backend (TLS timeouts are the SSL protocol's timers)."""
    loop = new_event_loop()
    yield loop
    loop.run_until_complete(loop.shutdown_default_executor())
    loop.close()


async def _silent_peer_handshake(
    loop: Loop, way: str, server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext, path: str
) -> None:
    """Start a TLS handshake ``way`` against a peer that never answers; return once the
    side under test gave up (client: the call raised; server: the peer was hung up on)."""
    timeout = SHORT_TLS_TIMEOUT
    family = socket.AF_UNIX if "unix" in way else socket.AF_INET
    if way.endswith("server"):
        server = await (
            loop.create_unix_server(
                asyncio.Protocol, path, ssl=server_ctx, ssl_handshake_timeout=timeout
            )
            if family == socket.AF_UNIX
            else loop.create_server(
                asyncio.Protocol, "127.0.0.1", 0, ssl=server_ctx, ssl_handshake_timeout=timeout
            )
        )
        with socket.socket(family) as client:
            client.setblocking(False)
            await loop.sock_connect(client, server.sockets[0].getsockname())
            try:
                assert await loop.sock_recv(client, 1) == b""
            except ConnectionResetError:
                pass  # aborted: a reset is as good as a FIN here
        server.close()
        await server.wait_closed()
        return
    if way == "connect_accepted_socket":
        mine, peer = socket.socketpair()
        with peer, pytest.raises(ConnectionError):
            await loop.connect_accepted_socket(
                asyncio.Protocol, mine, ssl=server_ctx, ssl_handshake_timeout=timeout
            )
        return
    with socket.socket(family) as listener:
        listener.bind(path if family == socket.AF_UNIX else ("127.0.0.1", 0))
        listener.listen()
        address = listener.getsockname()
        with pytest.raises(ConnectionError):
            if way == "create_connection":
                await loop.create_connection(
                    asyncio.Protocol,
                    *address,
                    ssl=client_ctx,
                    server_hostname="localhost",
                    ssl_handshake_timeout=timeout,
                )
            elif way == "create_unix_connection":
                await loop.create_unix_connection(
                    asyncio.Protocol,
                    address,
                    ssl=client_ctx,
                    server_hostname="localhost",
                    ssl_handshake_timeout=timeout,
                )
            else:
                transport, protocol = await loop.create_connection(asyncio.Protocol, *address)
                try:
                    await loop.start_tls(
                        transport,
                        protocol,
                        client_ctx,
                        server_hostname="localhost",
                        ssl_handshake_timeout=timeout,
                    )
                finally:
                    transport.close()


@pytest.mark.parametrize(
    "way",
    [
        "create_connection",
        "create_unix_connection",
        "start_tls",
        "connect_accepted_socket",
        "create_server",
        "create_unix_server",
    ],
)
def test_ssl_handshake_timeout_reaches_the_ssl_protocol(
    default_loop: Loop, tls: tuple[ssl.SSLContext, ssl.SSLContext], tmp_path: Any, way: str
) -> None:
    """Every call taking ``ssl_handshake_timeout`` gives up a silent handshake after it."""
    server_ctx, client_ctx = tls
    path = str(tmp_path / "tls.sock")
    started = default_loop.time()
    run(default_loop, _silent_peer_handshake(default_loop, way, server_ctx, client_ctx, path))
    assert default_loop.time() - started >= SHORT_TLS_TIMEOUT - 0.05


def test_ssl_shutdown_timeout_reaches_the_server_s_connections(
    default_loop: Loop, tls: tuple[ssl.SSLContext, ssl.SSLContext]
) -> None:
    """A TLS server's close waits ``ssl_shutdown_timeout`` for the peer's close_notify,
    then aborts: the connection is lost though the peer never answers."""
    server_ctx, client_ctx = tls
    lost: asyncio.Future[float] = default_loop.create_future()

    class CloseAtOnce(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.closed_at = default_loop.time()
            transport.close()

        def connection_lost(self, exc: Exception | None) -> None:
            lost.set_result(default_loop.time() - self.closed_at)

    async def main() -> float:
        server = await default_loop.create_server(
            CloseAtOnce,
            "127.0.0.1",
            0,
            ssl=server_ctx,
            ssl_shutdown_timeout=SHORT_TLS_TIMEOUT,
        )
        address = server.sockets[0].getsockname()

        def handshake() -> ssl.SSLSocket:  # a blocking client: it never reads again
            raw = socket.create_connection(address, timeout=10)
            return client_ctx.wrap_socket(raw, server_hostname="localhost")

        client = await default_loop.run_in_executor(None, handshake)
        try:
            return await lost
        finally:
            client.close()
            server.close()
            await server.wait_closed()

    waited = run(default_loop, main())
    assert SHORT_TLS_TIMEOUT - 0.05 <= waited < 10


def test_writes_of_one_callback_leave_together_at_the_end_of_the_iteration(
    aio_loop: Loop,
) -> None:
    """Coalescing: three writes from one callback are all still queued when it returns
    (asyncio would have sent the first at once) and all gone one iteration later."""

    async def main() -> None:
        a, b = socket.socketpair()
        b.setblocking(False)
        transport, _ = await aio_loop.connect_accepted_socket(asyncio.Protocol, a)
        sizes: list[int] = []

        def burst() -> None:
            for chunk in (b"one,", b"two,", b"three"):
                transport.write(chunk)
            sizes.append(transport.get_write_buffer_size())

        aio_loop.call_soon(burst)
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        sizes.append(transport.get_write_buffer_size())
        assert sizes == [13, 0]
        assert await aio_loop.sock_recv(b, 100) == b"one,two,three"
        transport.close()
        b.close()

    run(aio_loop, main())
