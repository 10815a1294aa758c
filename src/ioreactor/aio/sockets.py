"""Low-level socket coroutines (``sock_recv`` ... ``sock_sendfile``) and name resolution.

Each operation tries the system call at once; only when the kernel says EAGAIN does it
watch the fd (``add_reader``/``add_writer`` style, one watch per fd and direction) and
wait on a future. The future's done-callback removes the watch, so a cancelled call
leaves nothing watched.

Data flow::

    sock_recv(sock, n) -> recv() -> EAGAIN -> watch READ -> fd ready -> recv() -> future
"""

from __future__ import annotations

import errno
import functools
import io
import os
import socket
import ssl
from asyncio import events, exceptions, futures
from collections.abc import Awaitable, Callable
from typing import Any

from ioreactor.aio.core import LoopCore
from ioreactor.loop.poller import READ, WRITE

#: Largest chunk the sendfile fallback reads and sends at a time (asyncio's).
SENDFILE_FALLBACK_CHUNK = 256 * 1024
#: Largest count handed to one os.sendfile() call.
SENDFILE_MAX_CHUNK = 2**30


def _check_socket(sock: socket.socket, debug: bool) -> None:
    if isinstance(sock, ssl.SSLSocket):
        raise TypeError("Socket cannot be of type SSLSocket")
    if debug and sock.gettimeout() != 0:
        raise ValueError("the socket must be non-blocking")


def numeric_address(
    host: Any, port: Any, family: int, type: int, proto: int, *rest: Any
) -> tuple[int, int, int, str, Any] | None:
    """The address if ``host`` is already numeric (no resolver call needed), else None."""
    if not hasattr(socket, "inet_pton") or proto not in (0, socket.IPPROTO_TCP, socket.IPPROTO_UDP):
        return None
    if host is None or (isinstance(host, bytes) and not host):
        return None
    if type == socket.SOCK_STREAM:
        proto = socket.IPPROTO_TCP
    elif type == socket.SOCK_DGRAM:
        proto = socket.IPPROTO_UDP
    else:
        return None
    if (
        port is None
        or (isinstance(port, bytes) and port == b"")
        or (isinstance(port, str) and port == "")
    ):
        port = 0
    else:
        try:
            port = int(port)
        except (TypeError, ValueError):
            return None
    if isinstance(host, bytes):
        host = host.decode("idna")
    if "%" in host:
        return None  # a scope id needs the resolver
    families = [family] if family != socket.AF_UNSPEC else [socket.AF_INET, socket.AF_INET6]
    for af in families:
        try:
            socket.inet_pton(af, host)
        except (OSError, ValueError):
            continue
        if af == socket.AF_INET6:
            return af, type, proto, "", (host, port, *rest) if rest else (host, port, 0, 0)
        return af, type, proto, "", (host, port)
    return None


class SocketOps(LoopCore):
    """``sock_*`` coroutines, ``getaddrinfo``/``getnameinfo`` and ``sock_sendfile``."""

    # -- name resolution (in the default executor) ----------------------------------------

    async def getaddrinfo(
        self,
        host: Any,
        port: Any,
        *,
        family: int = 0,
        type: int = 0,
        proto: int = 0,
        flags: int = 0,
    ) -> list[tuple[Any, Any, int, str, Any]]:
        return await self.run_in_executor(
            None, socket.getaddrinfo, host, port, family, type, proto, flags
        )

    async def getnameinfo(self, sockaddr: Any, flags: int = 0) -> tuple[str, str]:
        return await self.run_in_executor(None, socket.getnameinfo, sockaddr, flags)

    async def _resolve(
        self, address: Any, *, family: int, type: int, proto: int
    ) -> tuple[int, int, int, str, Any]:
        host, port = address[:2]
        info = numeric_address(host, port, family, type, proto, *address[2:])
        if info is not None:
            return info
        infos = await self.getaddrinfo(host, port, family=family, type=type, proto=proto)
        if not infos:
            raise OSError(f"getaddrinfo({host!r}) returned empty list")
        return infos[0]

    # -- waiting for an fd ------------------------------------------------------------------

    def _wait_fd(
        self,
        fut: futures.Future[Any],
        fd: int,
        event: int,
        callback: Callable[..., object],
        *args: Any,
    ) -> None:
        """Watch ``fd`` for ``event`` until ``fut`` is done (or cancelled)."""
        self._ensure_fd_no_transport(fd)
        handle = self._add_watch(fd, event, callback, (fut, *args))
        fut.add_done_callback(functools.partial(self._unwait_fd, fd, event, handle))

    def _unwait_fd(self, fd: int, event: int, handle: events.Handle, fut: Any) -> None:
        if not handle.cancelled():
            self._remove_watch(fd, event)

    # -- receiving ---------------------------------------------------------------------------

    async def sock_recv(self, sock: socket.socket, nbytes: int) -> bytes:
        data: bytes = await self._sock_io(sock, READ, "recv", nbytes)
        return data

    async def sock_recv_into(self, sock: socket.socket, buf: Any) -> int:
        n: int = await self._sock_io(sock, READ, "recv_into", buf)
        return n

    async def sock_recvfrom(self, sock: socket.socket, bufsize: int) -> tuple[bytes, Any]:
        result: tuple[bytes, Any] = await self._sock_io(sock, READ, "recvfrom", bufsize)
        return result

    async def sock_recvfrom_into(
        self, sock: socket.socket, buf: Any, nbytes: int = 0
    ) -> tuple[int, Any]:
        result: tuple[int, Any] = await self._sock_io(
            sock, READ, "recvfrom_into", buf, nbytes or len(buf)
        )
        return result

    async def _sock_io(self, sock: socket.socket, event: int, method: str, *args: Any) -> Any:
        """``sock.method(*args)`` now if the socket is ready, else once ``event`` says it
        is (retried on a spurious wakeup): the one-call socket methods."""
        _check_socket(sock, self._debug)
        try:
            return getattr(sock, method)(*args)
        except (BlockingIOError, InterruptedError):
            pass
        fut = self.create_future()
        self._wait_fd(fut, sock.fileno(), event, self._retry_ready, sock, method, args)
        return await fut

    @staticmethod
    def _retry_ready(
        fut: futures.Future[Any], sock: socket.socket, method: str, args: tuple[Any, ...]
    ) -> None:
        """Retry ``sock.method(*args)`` (looked up now, as asyncio does) for ``fut``."""
        _settle(fut, getattr(sock, method), args)

    # -- sending -----------------------------------------------------------------------------

    async def sock_sendall(self, sock: socket.socket, data: Any) -> None:
        _check_socket(sock, self._debug)
        try:
            n = sock.send(data)
        except (BlockingIOError, InterruptedError):
            n = 0
        if n == len(data):
            return
        fut = self.create_future()
        view = memoryview(data).cast("B")
        self._wait_fd(fut, sock.fileno(), WRITE, self._sendall_ready, sock, view, [n])
        await fut

    @staticmethod
    def _sendall_ready(
        fut: futures.Future[None], sock: socket.socket, view: memoryview, pos: list[int]
    ) -> None:
        if fut.done():
            return
        start = pos[0]
        try:
            n = sock.send(view[start:])
        except (BlockingIOError, InterruptedError):
            return
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            fut.set_exception(exc)
            return
        start += n
        if start == len(view):
            fut.set_result(None)
        else:
            pos[0] = start

    async def sock_sendto(self, sock: socket.socket, data: Any, address: Any) -> int:
        n: int = await self._sock_io(sock, WRITE, "sendto", data, address)
        return n

    # -- connecting and accepting ------------------------------------------------------------

    async def sock_connect(self, sock: socket.socket, address: Any) -> None:
        _check_socket(sock, self._debug)
        if sock.family == socket.AF_INET or (sock.family == socket.AF_INET6 and socket.has_ipv6):
            resolved = await self._resolve(
                address, family=sock.family, type=sock.type, proto=sock.proto
            )
            address = resolved[4]
        try:
            sock.connect(address)
            return
        except (BlockingIOError, InterruptedError):
            pass
        fut = self.create_future()
        self._wait_fd(fut, sock.fileno(), WRITE, _settle, _connect_outcome, (sock, address))
        try:
            await fut
        finally:
            fut = None  # type: ignore[assignment]  # no cycle through the traceback

    async def sock_accept(self, sock: socket.socket) -> tuple[socket.socket, Any]:
        conn, address = await self._sock_io(sock, READ, "accept")
        conn.setblocking(False)
        return conn, address

    # -- sendfile ----------------------------------------------------------------------------

    async def sock_sendfile(
        self,
        sock: socket.socket,
        file: Any,
        offset: int = 0,
        count: int | None = None,
        *,
        fallback: bool | None = True,
    ) -> int:
        _check_socket(sock, self._debug)
        if self._debug and sock.gettimeout() != 0:
            raise ValueError("the socket must be non-blocking")
        check_sendfile_args(sock, file, offset, count)
        try:
            return await self._sendfile_native(sock, file, offset, count)
        except exceptions.SendfileNotAvailableError:
            if not fallback:
                raise
        return await self._sendfile_copy(
            file, offset, count, SENDFILE_FALLBACK_CHUNK, functools.partial(self.sock_sendall, sock)
        )

    async def _sendfile_native(
        self, sock: socket.socket, file: Any, offset: int, count: int | None
    ) -> int:
        """``os.sendfile`` from a regular file to a stream socket, waiting on EAGAIN."""
        try:
            fileno = file.fileno()
        except (AttributeError, io.UnsupportedOperation) as exc:
            raise exceptions.SendfileNotAvailableError("not a regular file") from exc
        try:
            fsize = os.fstat(fileno).st_size
        except OSError:
            raise exceptions.SendfileNotAvailableError("not a regular file") from None
        blocksize = count if count else fsize
        if not blocksize:
            return 0  # an empty file
        blocksize = min(blocksize, SENDFILE_MAX_CHUNK)
        sent = 0
        pos = offset
        try:
            while True:
                want = min(blocksize, count - sent) if count else blocksize
                if want <= 0:
                    break
                try:
                    n = os.sendfile(sock.fileno(), fileno, pos, want)
                except (BlockingIOError, InterruptedError):
                    await self.writable(sock)
                    continue
                except OSError as exc:
                    if sent == 0 and exc.errno in (errno.EINVAL, errno.ENOTSOCK, errno.ENOSYS):
                        raise exceptions.SendfileNotAvailableError(
                            f"os.sendfile() is not usable here: {exc}"
                        ) from exc
                    raise
                if n == 0:
                    break  # end of file
                sent += n
                pos += n
        finally:
            if sent > 0:
                file.seek(offset + sent)
        return sent

    async def writable(self, sock: socket.socket) -> None:
        """Wait until ``sock`` is writable (the kernel has room in its send buffer)."""
        fut: futures.Future[None] = self.create_future()
        self._wait_fd(fut, sock.fileno(), WRITE, _set_if_pending)
        await fut

    async def _sendfile_copy(
        self,
        file: Any,
        offset: int,
        count: int | None,
        chunk: int,
        write: Callable[[memoryview], Awaitable[Any]],
    ) -> int:
        """Sendfile's fallback: read ``file`` from ``offset`` (``count`` bytes, or to its
        end) ``chunk`` bytes at a time on the executor and ``await write()`` each; the
        bytes written are returned and the file's position is left after them."""
        if offset:
            file.seek(offset)
        blocksize = min(count, chunk) if count else chunk
        buf = bytearray(blocksize)
        sent = 0
        try:
            while True:
                if count:
                    blocksize = min(count - sent, blocksize)
                    if blocksize <= 0:
                        return sent
                view = memoryview(buf)[:blocksize]
                n = await self.run_in_executor(None, file.readinto, view)
                if not n:
                    return sent
                await write(view[:n])
                sent += n
        finally:
            if sent > 0 and hasattr(file, "seek"):
                file.seek(offset + sent)


def _settle(fut: futures.Future[Any], call: Callable[..., Any], args: tuple[Any, ...]) -> None:
    """Set ``fut`` to the result or exception of ``call(*args)``, unless it would block
    (the fd is waited for again) or ``fut`` is already done."""
    if fut.done():
        return
    try:
        result = call(*args)
    except (BlockingIOError, InterruptedError):
        return  # spurious: wait again
    except (SystemExit, KeyboardInterrupt):
        raise
    except BaseException as exc:
        fut.set_exception(exc)
    else:
        fut.set_result(result)


def _connect_outcome(sock: socket.socket, address: Any) -> None:
    """A non-blocking connect's result once the socket is writable: raises its error."""
    err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    if err:
        raise OSError(err, f"Connect call failed {address}")


def _set_if_pending(fut: futures.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


def check_sendfile_args(sock: Any, file: Any, offset: int, count: int | None) -> None:
    """asyncio's argument rules for sendfile: a binary file, a stream socket, sane counts."""
    if "b" not in getattr(file, "mode", "b"):
        raise ValueError("file should be opened in binary mode")
    if sock is not None and sock.type != socket.SOCK_STREAM:
        raise ValueError("only SOCK_STREAM type sockets are supported")
    if count is not None:
        if not isinstance(count, int):
            raise TypeError(f"count must be a positive integer (got {count!r})")
        if count <= 0:
            raise ValueError(f"count must be a positive integer (got {count!r})")
    if not isinstance(offset, int):
        raise TypeError(f"offset must be a non-negative integer (got {offset!r})")
    if offset < 0:
        raise ValueError(f"offset must be a non-negative integer (got {offset!r})")
