"""Stream connections: ``create_connection``, ``create_server``, the Unix variants,
``connect_accepted_socket``, ``start_tls`` and ``sendfile``.

Data flow::

    create_connection: getaddrinfo -> sock_connect (each address in turn, or happy
                       eyeballs) -> StreamTransport on a TcpConnection [-> SSLProtocol]
    create_server:     getaddrinfo -> bind -> Server -> Acceptor -> _accepted()
                       -> StreamTransport [-> SSLProtocol]

TLS is asyncio's own ``sslproto.SSLProtocol`` (a BufferedProtocol) over the transport;
the application gets its ``_SSLProtocolTransport``. ``sendfile`` on a plain transport
waits for the output to drain, pauses reading, and runs ``os.sendfile`` on a duplicate
of the socket's fd (the connection keeps its own fd watched); over TLS it falls back to
reading the file and writing it through the transport, paced by pause_writing.
"""

from __future__ import annotations

import collections
import collections.abc
import dataclasses
import errno
import functools
import itertools
import os
import socket
import ssl as ssl_module
import stat
import sys
import warnings
import weakref
from asyncio import constants, exceptions, futures, sslproto, staggered, tasks, transports
from collections.abc import Callable, Iterable
from typing import Any

from ioreactor.aio.server import Server
from ioreactor.aio.sockets import SocketOps, check_sendfile_args, numeric_address
from ioreactor.aio.stream import PROTOCOL_HANDLER, StreamTransport
from ioreactor.net.channels import connection_class
from ioreactor.net.connection import TcpConnection
from ioreactor.net.unix import probe

#: The connection's own read-pausing water marks are off: asyncio's protocols pace
#: themselves with pause_writing, and reading goes on while output is queued.
_NO_WATER_MARK = sys.maxsize
#: Chunk the sendfile fallback reads from the file at a time (asyncio's).
SENDFILE_FALLBACK_READ = 16 * 1024


def _interleave(infos: list[Any], first_family_count: int = 1) -> list[Any]:
    """Happy eyeballs' address order: alternate families, the first family first."""
    by_family: dict[int, list[Any]] = collections.OrderedDict()
    for info in infos:
        by_family.setdefault(info[0], []).append(info)
    lists = list(by_family.values())
    reordered: list[Any] = []
    if first_family_count > 1:
        reordered.extend(lists[0][: first_family_count - 1])
        del lists[0][: first_family_count - 1]
    reordered.extend(
        a for a in itertools.chain.from_iterable(itertools.zip_longest(*lists)) if a is not None
    )
    return reordered


@dataclasses.dataclass(frozen=True, slots=True)
class TlsOptions:
    """asyncio's ``ssl`` arguments of one call, gathered: what each TLS transport's
    ``sslproto.SSLProtocol`` is made from (one for every connection a server accepts)."""

    #: None: asyncio's default client context (``ssl=True``).
    context: ssl_module.SSLContext | None
    server_side: bool = False
    server_hostname: str | None = None
    handshake_timeout: float | None = None
    shutdown_timeout: float | None = None

    def protocol(
        self, loop: Any, app_protocol: Any, waiter: Any, *, call_connection_made: bool = True
    ) -> sslproto.SSLProtocol:
        """The SSL protocol between a transport and ``app_protocol``."""
        return sslproto.SSLProtocol(
            loop,
            app_protocol,
            self.context,  # type: ignore[arg-type]
            waiter,
            self.server_side,
            self.server_hostname,
            ssl_handshake_timeout=self.handshake_timeout,  # type: ignore[arg-type]
            ssl_shutdown_timeout=self.shutdown_timeout,
            call_connection_made=call_connection_made,
        )


def _tls_options(
    ssl: Any,
    ssl_handshake_timeout: float | None,
    ssl_shutdown_timeout: float | None,
    *,
    server_side: bool = False,
    server_hostname: str | None = None,
) -> TlsOptions | None:
    """The TLS options of a call's ``ssl`` arguments; None without ``ssl``, where the
    timeouts are refused."""
    if not ssl:
        if ssl_handshake_timeout is not None:
            raise ValueError("ssl_handshake_timeout is only meaningful with ssl")
        if ssl_shutdown_timeout is not None:
            raise ValueError("ssl_shutdown_timeout is only meaningful with ssl")
        return None
    return TlsOptions(
        None if isinstance(ssl, bool) else ssl,
        server_side,
        server_hostname,
        ssl_handshake_timeout,
        ssl_shutdown_timeout,
    )


def _server_tls_options(
    ssl: Any, ssl_handshake_timeout: float | None, ssl_shutdown_timeout: float | None
) -> TlsOptions | None:
    """A server's TLS options: its ``ssl`` is an SSLContext or None (``ssl=True``, a
    default client context, has no certificate to serve)."""
    if isinstance(ssl, bool):
        raise TypeError("ssl argument must be an SSLContext or None")
    return _tls_options(ssl, ssl_handshake_timeout, ssl_shutdown_timeout, server_side=True)


def _check_not_ssl_socket(sock: Any) -> None:
    if isinstance(sock, ssl_module.SSLSocket):
        raise TypeError("Socket cannot be of type SSLSocket")


class StreamOps(SocketOps):
    """Stream transports on ioreactor connections, their servers, TLS and sendfile."""

    def __init__(self, poller: str | None = None, **kwargs: Any) -> None:
        super().__init__(poller, **kwargs)
        self._connection_class: type[TcpConnection] = connection_class(self._reactor)
        #: fd -> its stream transport, while the transport lives.
        self._transports: weakref.WeakValueDictionary[int, StreamTransport] = (
            weakref.WeakValueDictionary()
        )

    def close(self) -> None:
        """Close the loop; a stream transport still open is reported (ResourceWarning,
        asyncio's "unclosed transport") and its socket closed."""
        if not self.is_running() and not self.is_closed():
            for transport in list(self._transports.values()):
                if not transport.connection.closed:
                    warnings.warn(
                        f"unclosed transport {transport!r}",
                        ResourceWarning,
                        source=transport,
                        stacklevel=2,
                    )
                    transport.abort()
        super().close()

    def _ensure_fd_no_transport(self, fd: int) -> None:
        """add_reader() and friends refuse an fd that an open transport owns."""
        transport = self._transports.get(fd)
        if transport is not None and not transport.is_closing():
            raise RuntimeError(f"File descriptor {fd!r} is used by transport {transport!r}")

    # -- transports ------------------------------------------------------------------------

    def _make_transport(
        self,
        sock: socket.socket,
        protocol: Any,
        waiter: futures.Future[Any] | None,
        *,
        extra: dict[str, Any] | None = None,
        server: Server | None = None,
    ) -> StreamTransport:
        if sock.family in (socket.AF_INET, socket.AF_INET6) and sock.type == socket.SOCK_STREAM:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass  # reset already: the first read tells
        try:
            peer = sock.getpeername()
        except OSError:
            peer = None
        conn = self._connection_class(
            self._reactor,
            sock,
            peer,
            PROTOCOL_HANDLER,
            None,
            high_water_mark=_NO_WATER_MARK,
            low_water_mark=_NO_WATER_MARK,
        )
        conn.close_timeout = None  # asyncio's close() waits for the peer to read
        transport = StreamTransport(self, conn, protocol, waiter, extra, server)
        self._transports[conn.fd] = transport
        self.call_soon(transport.start)
        return transport

    def _make_ssl_transport(
        self,
        sock: socket.socket,
        protocol: Any,
        tls: TlsOptions,
        waiter: futures.Future[Any],
        *,
        extra: dict[str, Any] | None = None,
        server: Server | None = None,
    ) -> Any:
        ssl_protocol = tls.protocol(self, protocol, waiter)
        self._make_transport(sock, ssl_protocol, None, extra=extra, server=server)
        return ssl_protocol._app_transport

    async def _create_connection_transport(
        self,
        sock: socket.socket,
        protocol_factory: Callable[[], Any],
        tls: TlsOptions | None,
    ) -> tuple[Any, Any]:
        sock.setblocking(False)
        protocol = protocol_factory()
        waiter = self.create_future()
        transport: Any
        if tls is not None:
            transport = self._make_ssl_transport(sock, protocol, tls, waiter)
        else:
            transport = self._make_transport(sock, protocol, waiter)
        await self._until_ready(transport, waiter)
        return transport, protocol

    @staticmethod
    async def _until_ready(transport: transports.BaseTransport, waiter: Any) -> None:
        """Await a new transport's ``waiter``; if that fails (or is cancelled), close it."""
        try:
            await waiter
        except BaseException:
            transport.close()
            raise

    # -- name resolution ---------------------------------------------------------------------

    async def _resolve_all(
        self, address: Any, *, family: int = 0, type: int = 0, proto: int = 0, flags: int = 0
    ) -> list[Any]:
        host, port = address[:2]
        info = numeric_address(host, port, family, type, proto, *address[2:])
        if info is not None:
            return [info]
        infos = await self.getaddrinfo(
            host, port, family=family, type=type, proto=proto, flags=flags
        )
        if not infos:
            raise OSError(f"getaddrinfo({host!r}) returned empty list")
        return infos

    # -- clients -----------------------------------------------------------------------------

    async def create_connection(
        self,
        protocol_factory: Callable[[], Any],
        host: str | None = None,
        port: int | None = None,
        *,
        ssl: Any = None,
        family: int = 0,
        proto: int = 0,
        flags: int = 0,
        sock: socket.socket | None = None,
        local_addr: Any = None,
        server_hostname: str | None = None,
        ssl_handshake_timeout: float | None = None,
        ssl_shutdown_timeout: float | None = None,
        happy_eyeballs_delay: float | None = None,
        interleave: int | None = None,
        all_errors: bool = False,
    ) -> tuple[Any, Any]:
        if server_hostname is not None and not ssl:
            raise ValueError("server_hostname is only meaningful with ssl")
        if server_hostname is None and ssl:
            if not host:
                raise ValueError("You must set server_hostname when using ssl without a host")
            server_hostname = host
        tls = _tls_options(
            ssl, ssl_handshake_timeout, ssl_shutdown_timeout, server_hostname=server_hostname
        )
        if sock is not None:
            _check_not_ssl_socket(sock)
        if happy_eyeballs_delay is not None and interleave is None:
            interleave = 1  # happy eyeballs: interleave the families
        if host is not None or port is not None:
            if sock is not None:
                raise ValueError("host/port and sock can not be specified at the same time")
            infos = await self._resolve_all(
                (host, port), family=family, type=socket.SOCK_STREAM, proto=proto, flags=flags
            )
            laddr_infos = None
            if local_addr is not None:
                laddr_infos = await self._resolve_all(
                    local_addr, family=family, type=socket.SOCK_STREAM, proto=proto, flags=flags
                )
            if interleave:
                infos = _interleave(infos, interleave)
            errors: list[list[OSError]] = []
            if happy_eyeballs_delay is None:
                for addrinfo in infos:
                    try:
                        sock = await self._connect_sock(errors, addrinfo, laddr_infos)
                        break
                    except OSError:
                        continue
            else:
                sock, _, _ = await staggered.staggered_race(
                    [
                        functools.partial(self._connect_sock, errors, addrinfo, laddr_infos)
                        for addrinfo in infos
                    ],
                    happy_eyeballs_delay,
                    loop=self,
                )
            if sock is None:
                flat = [exc for sub in errors for exc in sub]
                try:
                    if all_errors:
                        raise ExceptionGroup("create_connection failed", flat)
                    if len(flat) == 1:
                        raise flat[0]
                    model = str(flat[0])
                    if all(str(exc) == model for exc in flat):
                        raise flat[0]
                    raise OSError(
                        "Multiple exceptions: {}".format(", ".join(str(exc) for exc in flat))
                    )
                finally:
                    del flat, errors  # no cycle through the tracebacks
        else:
            if sock is None:
                raise ValueError("host and port was not specified and no sock specified")
            if sock.type != socket.SOCK_STREAM:
                raise ValueError(f"A Stream Socket was expected, got {sock!r}")
        return await self._create_connection_transport(sock, protocol_factory, tls)

    async def _connect_sock(
        self,
        errors: list[list[OSError]],
        addr_info: Any,
        local_addr_infos: list[Any] | None = None,
    ) -> socket.socket:
        mine: list[OSError] = []
        errors.append(mine)
        family, type_, proto, _, address = addr_info
        sock = None
        try:
            sock = socket.socket(family=family, type=type_, proto=proto)
            sock.setblocking(False)
            if local_addr_infos is not None:
                for lfamily, _, _, _, laddr in local_addr_infos:
                    if lfamily != family:
                        continue
                    try:
                        sock.bind(laddr)
                        break
                    except OSError as exc:
                        msg = (
                            f"error while attempting to bind on address {laddr!r}: "
                            f"{(exc.strerror or '').lower()}"
                        )
                        mine.append(OSError(exc.errno, msg))
                else:
                    if mine:
                        raise mine.pop()
                    raise OSError(f"no matching local address with {family=} found")
            await self.sock_connect(sock, address)
            return sock
        except OSError as exc:
            mine.append(exc)
            if sock is not None:
                sock.close()
            raise
        except BaseException:
            if sock is not None:
                sock.close()
            raise

    async def create_unix_connection(
        self,
        protocol_factory: Callable[[], Any],
        path: str | None = None,
        *,
        ssl: Any = None,
        sock: socket.socket | None = None,
        server_hostname: str | None = None,
        ssl_handshake_timeout: float | None = None,
        ssl_shutdown_timeout: float | None = None,
    ) -> tuple[Any, Any]:
        if ssl:
            if server_hostname is None:
                raise ValueError("you have to pass server_hostname when using ssl")
        elif server_hostname is not None:
            raise ValueError("server_hostname is only meaningful with ssl")
        tls = _tls_options(
            ssl, ssl_handshake_timeout, ssl_shutdown_timeout, server_hostname=server_hostname
        )
        if path is not None:
            if sock is not None:
                raise ValueError("path and sock can not be specified at the same time")
            path = os.fspath(path)
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM, 0)
            try:
                sock.setblocking(False)
                await self.sock_connect(sock, path)
            except BaseException:
                sock.close()
                raise
        else:
            if sock is None:
                raise ValueError("no path and sock were specified")
            if sock.family != socket.AF_UNIX or sock.type != socket.SOCK_STREAM:
                raise ValueError(f"A UNIX Domain Stream Socket was expected, got {sock!r}")
            sock.setblocking(False)
        return await self._create_connection_transport(sock, protocol_factory, tls)

    async def connect_accepted_socket(
        self,
        protocol_factory: Callable[[], Any],
        sock: socket.socket,
        *,
        ssl: Any = None,
        ssl_handshake_timeout: float | None = None,
        ssl_shutdown_timeout: float | None = None,
    ) -> tuple[Any, Any]:
        if sock.type != socket.SOCK_STREAM:
            raise ValueError(f"A Stream Socket was expected, got {sock!r}")
        tls = _tls_options(ssl, ssl_handshake_timeout, ssl_shutdown_timeout, server_side=True)
        _check_not_ssl_socket(sock)
        return await self._create_connection_transport(sock, protocol_factory, tls)

    # -- servers -----------------------------------------------------------------------------

    async def create_server(  # type: ignore[override]
        self,
        protocol_factory: Callable[[], Any],
        host: str | Iterable[str] | None = None,
        port: int | None = None,
        *,
        family: int = socket.AF_UNSPEC,
        flags: int = socket.AI_PASSIVE,
        sock: socket.socket | None = None,
        backlog: int = 100,
        ssl: Any = None,
        reuse_address: bool | None = None,
        reuse_port: bool | None = None,
        ssl_handshake_timeout: float | None = None,
        ssl_shutdown_timeout: float | None = None,
        start_serving: bool = True,
    ) -> Server:
        tls = _server_tls_options(ssl, ssl_handshake_timeout, ssl_shutdown_timeout)
        if sock is not None:
            _check_not_ssl_socket(sock)
        if host is not None or port is not None:
            if sock is not None:
                raise ValueError("host/port and sock can not be specified at the same time")
            if reuse_address is None:
                reuse_address = os.name == "posix"
            hosts: list[Any]
            if host == "":
                hosts = [None]
            elif isinstance(host, str) or not isinstance(host, collections.abc.Iterable):
                hosts = [host]
            else:
                hosts = list(host)
            found = await tasks.gather(
                *[
                    self._resolve_all(
                        (h, port), family=family, type=socket.SOCK_STREAM, flags=flags
                    )
                    for h in hosts
                ]
            )
            infos = set(itertools.chain.from_iterable(found))
            sockets: list[socket.socket] = []
            completed = False
            try:
                for af, socktype, proto, _, sa in infos:
                    try:
                        sock = socket.socket(af, socktype, proto)
                    except OSError:
                        continue  # an address family the kernel lacks
                    sockets.append(sock)
                    if reuse_address:
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, True)
                    if reuse_port:
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                    if af == socket.AF_INET6:
                        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, True)
                    try:
                        sock.bind(sa)
                    except OSError as err:
                        raise OSError(
                            err.errno,
                            f"error while attempting to bind on address {sa!r}: "
                            f"{(err.strerror or '').lower()}",
                        ) from None
                completed = True
            finally:
                if not completed:
                    for s in sockets:
                        s.close()
        else:
            if sock is None:
                raise ValueError("Neither host/port nor sock were specified")
            if sock.type != socket.SOCK_STREAM:
                raise ValueError(f"A Stream Socket was expected, got {sock!r}")
            sockets = [sock]
        return await self._serve(sockets, protocol_factory, tls, backlog, start_serving)

    async def create_unix_server(  # type: ignore[override]
        self,
        protocol_factory: Callable[[], Any],
        path: str | None = None,
        *,
        sock: socket.socket | None = None,
        backlog: int = 100,
        ssl: Any = None,
        ssl_handshake_timeout: float | None = None,
        ssl_shutdown_timeout: float | None = None,
        start_serving: bool = True,
    ) -> Server:
        tls = _server_tls_options(ssl, ssl_handshake_timeout, ssl_shutdown_timeout)
        if path is not None:
            if sock is not None:
                raise ValueError("path and sock can not be specified at the same time")
            path = os.fspath(path)
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                _bind_unix_path(sock, path)
            except BaseException:
                sock.close()
                raise
        else:
            if sock is None:
                raise ValueError("path was not specified, and no sock specified")
            if sock.family != socket.AF_UNIX or sock.type != socket.SOCK_STREAM:
                raise ValueError(f"A UNIX Domain Stream Socket was expected, got {sock!r}")
        return await self._serve([sock], protocol_factory, tls, backlog, start_serving)

    async def _serve(
        self,
        sockets: list[socket.socket],
        protocol_factory: Callable[[], Any],
        tls: TlsOptions | None,
        backlog: int,
        start_serving: bool,
    ) -> Server:
        """The Server of ``create_server`` and ``create_unix_server`` on their sockets."""
        for sock in sockets:
            sock.setblocking(False)
        server = Server(self, sockets, protocol_factory, tls, backlog)
        if start_serving:
            server._start_serving()
            await tasks.sleep(0)
        return server

    def _accepted(self, server: Server, sock: socket.socket, peer: Any) -> None:
        """An accepted connection (from the server's acceptor): protocol and transport."""
        try:
            protocol = server._protocol_factory()
            waiter = self.create_future()
            extra = {"peername": peer}
            if server._tls is not None:
                transport: Any = self._make_ssl_transport(
                    sock, protocol, server._tls, waiter, extra=extra, server=server
                )
            else:
                transport = self._make_transport(sock, protocol, waiter, extra=extra, server=server)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            sock.close()
            self.call_exception_handler(
                {"message": "Error on transport creation for incoming connection", "exception": exc}
            )
            return
        waiter.add_done_callback(functools.partial(self._accept_done, transport, protocol))

    def _accept_done(self, transport: Any, protocol: Any, waiter: futures.Future[Any]) -> None:
        if waiter.cancelled():
            transport.close()
            return
        exc = waiter.exception()
        if exc is not None:
            transport.close()
            if self._debug or not isinstance(exc, (OSError, ConnectionError)):
                self.call_exception_handler(
                    {
                        "message": "Error on transport creation for incoming connection",
                        "exception": exc,
                        "protocol": protocol,
                        "transport": transport,
                    }
                )

    # -- TLS upgrade -------------------------------------------------------------------------

    async def start_tls(
        self,
        transport: Any,
        protocol: Any,
        sslcontext: Any,
        *,
        server_side: bool = False,
        server_hostname: str | None = None,
        ssl_handshake_timeout: float | None = None,
        ssl_shutdown_timeout: float | None = None,
    ) -> Any:
        if not isinstance(sslcontext, ssl_module.SSLContext):
            raise TypeError(
                f"sslcontext is expected to be an instance of ssl.SSLContext, got {sslcontext!r}"
            )
        if not getattr(transport, "_start_tls_compatible", False):
            raise TypeError(f"transport {transport!r} is not supported by start_tls()")
        waiter = self.create_future()
        tls = TlsOptions(
            sslcontext, server_side, server_hostname, ssl_handshake_timeout, ssl_shutdown_timeout
        )
        ssl_protocol = tls.protocol(self, protocol, waiter, call_connection_made=False)
        transport.pause_reading()
        transport.set_protocol(ssl_protocol)
        if getattr(transport, "_protocol_paused", False):
            # Output above the high water mark: the new protocol starts paused too, so
            # the coming resume_writing() has a pause to end.
            ssl_protocol.pause_writing()
        conmade_cb = self.call_soon(ssl_protocol.connection_made, transport)
        resume_cb = self.call_soon(transport.resume_reading)
        try:
            await waiter
        except BaseException:
            transport.close()
            conmade_cb.cancel()
            resume_cb.cancel()
            raise
        return ssl_protocol._app_transport

    # -- sendfile over a transport -----------------------------------------------------------

    async def sendfile(
        self,
        transport: Any,
        file: Any,
        offset: int = 0,
        count: int | None = None,
        *,
        fallback: bool = True,
    ) -> int:
        if transport.is_closing():
            raise RuntimeError("Transport is closing")
        mode = getattr(transport, "_sendfile_compatible", constants._SendfileMode.UNSUPPORTED)
        if mode is constants._SendfileMode.UNSUPPORTED:
            raise RuntimeError(f"sendfile is not supported for transport {transport!r}")
        check_sendfile_args(None, file, offset, count)
        if mode is constants._SendfileMode.TRY_NATIVE:
            try:
                return await self._sendfile_transport_native(transport, file, offset, count)
            except exceptions.SendfileNotAvailableError:
                if not fallback:
                    raise
        if not fallback:
            raise RuntimeError(
                f"fallback is disabled and native sendfile is not supported for transport "
                f"{transport!r}"
            )
        return await self._sendfile_transport_fallback(transport, file, offset, count)

    async def _sendfile_transport_native(
        self, transport: StreamTransport, file: Any, offset: int, count: int | None
    ) -> int:
        resume_reading = transport.is_reading()
        transport.pause_reading()
        await transport.drained()
        transport._sendfile_busy = True
        dup = transport.connection.sock.dup()
        try:
            dup.setblocking(False)
            return await self.sock_sendfile(dup, file, offset, count, fallback=False)
        finally:
            dup.close()
            transport._sendfile_busy = False
            if resume_reading:
                transport.resume_reading()

    async def _sendfile_transport_fallback(
        self, transport: Any, file: Any, offset: int, count: int | None
    ) -> int:
        pacer = _SendfilePacer(self, transport)
        try:
            return await self._sendfile_copy(
                file, offset, count, SENDFILE_FALLBACK_READ, pacer.write
            )
        finally:
            await pacer.restore()


class _SendfilePacer:
    """Stands in for the transport's protocol while the sendfile fallback writes: waits
    on pause_writing/resume_writing and passes connection_lost on."""

    def __init__(self, loop: StreamOps, transport: Any) -> None:
        self._loop = loop
        self._transport = transport
        self._proto = transport.get_protocol()
        self._resume_reading = transport.is_reading()
        self._resume_writing = bool(getattr(transport, "_protocol_paused", False))
        transport.pause_reading()
        transport.set_protocol(self)
        self._write_ready: futures.Future[None] | None = (
            loop.create_future() if self._resume_writing else None
        )

    async def write(self, chunk: memoryview) -> None:
        """Write ``chunk`` once the transport's output is below its high-water mark."""
        if self._transport.is_closing():
            raise ConnectionError("Connection closed by peer")
        if self._write_ready is not None:
            await self._write_ready
        self._transport.write(chunk)

    def connection_made(self, transport: Any) -> None:
        raise RuntimeError("Invalid state: connection should have been established already.")

    def connection_lost(self, exc: BaseException | None) -> None:
        fut = self._write_ready
        if fut is not None and not fut.done():
            fut.set_exception(exc or ConnectionError("Connection is closed by peer"))
        self._proto.connection_lost(exc)

    def pause_writing(self) -> None:
        if self._write_ready is None:
            self._write_ready = self._loop.create_future()

    def resume_writing(self) -> None:
        fut, self._write_ready = self._write_ready, None
        if fut is not None and not fut.done():
            fut.set_result(None)

    def data_received(self, data: bytes) -> None:
        raise RuntimeError("Invalid state: reading should be paused")

    def eof_received(self) -> None:
        raise RuntimeError("Invalid state: reading should be paused")

    async def restore(self) -> None:
        self._transport.set_protocol(self._proto)
        if self._resume_reading:
            self._transport.resume_reading()
        if self._write_ready is not None:
            self._write_ready.cancel()
        if self._resume_writing:
            self._proto.resume_writing()


def _bind_unix_path(sock: socket.socket, path: Any) -> None:
    """Bind a Unix stream server: a stale socket file is replaced (asyncio does too),
    a live server's is not (asyncio would unlink it from under that server)."""
    abstract = path[0] in (0, "\x00")
    if not abstract:
        try:
            if stat.S_ISSOCK(os.stat(path).st_mode) and probe(os.fsdecode(path)) == "stale":
                os.remove(path)
        except FileNotFoundError:
            pass
        except OSError as err:
            from asyncio.log import logger

            logger.error("Unable to check or remove stale UNIX socket %r: %r", path, err)
    try:
        sock.bind(path)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise OSError(errno.EADDRINUSE, f"Address {path!r} is already in use") from None
        raise
