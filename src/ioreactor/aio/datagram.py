"""Datagram endpoints (UDP, Unix datagram): ``create_datagram_endpoint`` and its transport.

Data flow::

    kernel -> recvfrom_into(loop.scratch) -> protocol.datagram_received(bytes, addr)
              (up to READ_BATCH datagrams per readiness event)
    transport.sendto(data, addr) -> sendto() now; EAGAIN -> queue -> EPOLLOUT -> sendto()

The transport watches its fd on the reactor directly rather than through
:class:`ioreactor.net.udp.UdpEndpoint`: asyncio's contract differs from the endpoint's
in the details a datagram program sees -- a socket passed in (``sock=``) or left
unbound, a send error delivered to ``error_received`` instead of raised, the 256 KiB
receive size for Unix datagrams -- while the data path (scratch-buffer reads, a queue
only for what the kernel refuses) is the same.
"""

from __future__ import annotations

import collections
import errno
import os
import socket
import stat
import sys
import warnings
from asyncio import transports
from collections.abc import Callable
from typing import Any

from ioreactor.aio.connections import StreamOps
from ioreactor.aio.stream import FlowControl, ProtocolState, socket_extra
from ioreactor.loop.poller import ERROR, HUP, READ, WRITE

#: Datagrams read per readiness event before the loop serves other fds.
READ_BATCH = 64
#: asyncio 3.11 drops empty datagrams in sendto(); 3.12 sends them.
_SEND_EMPTY = sys.version_info >= (3, 12)
#: What one send came to (DatagramTransport._send).
_SENT, _WOULD_BLOCK, _FAILED = range(3)


class DatagramTransport(ProtocolState, FlowControl, transports.DatagramTransport):
    """A datagram socket as an asyncio transport (see the module docstring)."""

    _extra: dict[str, Any]  # BaseTransport's slot

    __slots__ = (
        "__weakref__",
        "_address",
        "_buffer",
        "_buffer_size",
        "_closing",
        "_events",
        "_fd",
        "_protocol",
        "_sock",
        "_watched",
    )

    def __init__(
        self,
        loop: DatagramOps,
        sock: socket.socket,
        protocol: Any,
        address: Any = None,
        waiter: Any = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(extra, loop)
        self._sock: socket.socket | None = sock
        self._fd = sock.fileno()
        socket_extra(self._extra, sock)
        self._protocol = protocol
        self._address = address
        self._buffer: collections.deque[tuple[bytes, Any]] = collections.deque()
        self._buffer_size = 0
        self._closing = False
        self._conn_lost = 0
        self._events = 0
        self._watched = False
        loop.call_soon(self._start, waiter)

    def __repr__(self) -> str:
        return f"<DatagramTransport fd={self._fd} {'closed' if self._sock is None else 'open'}>"

    def __del__(self, _warn: Callable[..., None] = warnings.warn) -> None:
        sock = getattr(self, "_sock", None)
        if sock is not None:
            _warn(f"unclosed transport {self!r}", ResourceWarning, source=self)
            sock.close()

    def _start(self, waiter: Any) -> None:
        if self._sock is None:
            return
        self._protocol.connection_made(self)
        if self._sock is not None and not self._closing:
            self._set_events(READ)
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _set_events(self, events: int) -> None:
        if events == self._events or self._sock is None:
            return
        reactor = self._loop.reactor
        if not events:
            reactor.unwatch(self._fd)
            self._watched = False
        elif not self._watched:
            reactor.watch(self._fd, events, self._on_event)
            self._watched = True
        else:
            reactor.modify(self._fd, events)
        self._events = events

    def _on_event(self, mask: int) -> None:
        if mask & WRITE:
            self._write_ready()
        if self._events & READ and mask & (READ | ERROR | HUP):
            self._read_ready()

    # -- input -------------------------------------------------------------------------------

    def _read_ready(self) -> None:
        sock = self._sock
        assert sock is not None
        recv = sock.recvfrom_into
        scratch = self._loop.reactor.scratch_view
        for _ in range(READ_BATCH):
            try:
                n, addr = recv(scratch)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self._protocol.error_received(exc)
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                self._fatal_error(exc, "Fatal read error on datagram transport")
                return
            else:
                try:
                    self._protocol.datagram_received(scratch[:n].tobytes(), addr)
                except (SystemExit, KeyboardInterrupt):
                    raise
                except BaseException as exc:
                    self._fatal_error(exc, "Fatal error: protocol.datagram_received() call failed.")
                    return
            if not self._events & READ:
                return  # closed meanwhile
        if self._loop.reactor.edge_triggered:
            self._loop.call_soon(self._resume_read)

    def _resume_read(self) -> None:
        if self._events & READ:
            self._read_ready()

    # -- output ------------------------------------------------------------------------------

    def get_write_buffer_size(self) -> int:
        return self._buffer_size

    def sendto(self, data: Any, addr: Any = None) -> None:
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(
                f"data argument must be a bytes-like object, not {type(data).__name__!r}"
            )
        if not data and not _SEND_EMPTY:
            return
        if self._address:
            if addr not in (None, self._address):
                raise ValueError(f"Invalid address: must be None or {self._address}")
            addr = self._address
        if self._conn_lost and self._address:
            self._drop_lost_write("socket.send() raised exception.")
            return
        sock = self._sock
        if sock is None or self._closing:
            return
        if not self._buffer:
            if self._send(sock, data, addr) != _WOULD_BLOCK:
                return
            self._set_events(self._events | WRITE)
        self._buffer.append((bytes(data), addr))
        self._buffer_size += len(data)
        self._maybe_pause_protocol()

    def _write_ready(self) -> None:
        sock = self._sock
        buffer = self._buffer
        while buffer and sock is not None:
            data, addr = buffer.popleft()
            self._buffer_size -= len(data)
            outcome = self._send(sock, data, addr)
            if outcome == _WOULD_BLOCK:
                buffer.appendleft((data, addr))
                self._buffer_size += len(data)
                break
            if outcome == _FAILED:
                return
        self._maybe_resume_protocol()
        if not buffer:
            self._set_events(self._events & ~WRITE)
            if self._closing:
                self._call_connection_lost(None)

    def _send(self, sock: socket.socket, data: Any, addr: Any) -> int:
        """Send one datagram now: _SENT; _WOULD_BLOCK, the kernel has no room (it stays
        to be queued); _FAILED, an OSError went to ``error_received`` (the transport
        stays open) or anything else closed the transport."""
        try:
            if self._extra["peername"]:
                sock.send(data)
            else:
                sock.sendto(data, addr)
        except (BlockingIOError, InterruptedError):
            return _WOULD_BLOCK
        except OSError as exc:
            self._protocol.error_received(exc)
            return _FAILED
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc, "Fatal write error on datagram transport")
            return _FAILED
        return _SENT

    # -- closing -----------------------------------------------------------------------------

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        self._set_events(self._events & ~READ)
        if not self._buffer:
            self._conn_lost += 1
            self._loop.call_soon(self._call_connection_lost, None)

    def abort(self) -> None:
        self._force_close(None)

    def _force_close(self, exc: BaseException | None) -> None:
        if self._conn_lost:
            return
        self._buffer.clear()
        self._buffer_size = 0
        self._set_events(0)
        self._closing = True
        self._conn_lost += 1
        self._loop.call_soon(self._call_connection_lost, exc)

    def _call_connection_lost(self, exc: BaseException | None) -> None:
        try:
            self._protocol.connection_lost(exc)
        finally:
            self._set_events(0)
            sock, self._sock = self._sock, None
            if sock is not None:
                sock.close()


def remove_stale_unix_path(path: str) -> None:
    """A socket file left at ``path`` (asyncio removes it before binding)."""
    if path and path[0] not in ("\0", 0):
        try:
            if stat.S_ISSOCK(os.stat(path).st_mode):
                os.remove(path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            if exc.errno != errno.ENOENT:
                raise


_UNSET: Any = object()


class DatagramOps(StreamOps):
    """``create_datagram_endpoint``: resolve, open, bind/connect, then the transport."""

    async def create_datagram_endpoint(
        self,
        protocol_factory: Callable[[], Any],
        local_addr: Any = None,
        remote_addr: Any = None,
        *,
        family: int = 0,
        proto: int = 0,
        flags: int = 0,
        reuse_address: Any = _UNSET,
        reuse_port: bool | None = None,
        allow_broadcast: bool | None = None,
        sock: socket.socket | None = None,
    ) -> tuple[DatagramTransport, Any]:
        if reuse_address is not _UNSET:
            if reuse_address:
                raise ValueError(
                    "Passing `reuse_address=True` is no longer supported, as the usage of "
                    "SO_REUSEPORT in UDP poses a significant security concern."
                )
            warnings.warn(
                "The *reuse_address* parameter has been deprecated as of 3.5.10 and is "
                "scheduled for removal in 3.11.",
                DeprecationWarning,
                stacklevel=2,
            )
        r_addr = None
        if sock is not None:
            if sock.type == socket.SOCK_STREAM:
                raise ValueError(f"A datagram socket was expected, got {sock!r}")
            opts = {
                "local_addr": local_addr,
                "remote_addr": remote_addr,
                "family": family,
                "proto": proto,
                "flags": flags,
                "reuse_address": None if reuse_address is _UNSET else reuse_address,
                "reuse_port": reuse_port,
                "allow_broadcast": allow_broadcast,
            }
            if any(opts.values()):
                problems = ", ".join(f"{k}={v}" for k, v in opts.items() if v)
                raise ValueError(
                    f"socket modifier keyword arguments can not be used when sock is "
                    f"specified. ({problems})"
                )
            sock.setblocking(False)
        else:
            pairs = await self._datagram_address_pairs(
                local_addr, remote_addr, family, proto, flags
            )
            errors: list[OSError] = []
            for (fam, pro), (local_address, remote_address) in pairs:
                sock = None
                r_addr = None
                try:
                    sock = socket.socket(family=fam, type=socket.SOCK_DGRAM, proto=pro)
                    if reuse_port:
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                    if allow_broadcast:
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
                    sock.setblocking(False)
                    if local_addr:
                        sock.bind(local_address)
                    if remote_addr:
                        if not allow_broadcast:
                            await self.sock_connect(sock, remote_address)
                        r_addr = remote_address
                except OSError as exc:
                    if sock is not None:
                        sock.close()
                    errors.append(exc)
                except BaseException:
                    if sock is not None:
                        sock.close()
                    raise
                else:
                    break
            else:
                raise errors[0]
        assert sock is not None
        protocol = protocol_factory()
        waiter = self.create_future()
        transport = DatagramTransport(self, sock, protocol, r_addr, waiter)
        await self._until_ready(transport, waiter)
        return transport, protocol

    async def _datagram_address_pairs(
        self, local_addr: Any, remote_addr: Any, family: int, proto: int, flags: int
    ) -> list[tuple[tuple[int, int], tuple[Any, Any]]]:
        """(family, proto) -> (local, remote) candidates, asyncio's way."""
        if not (local_addr or remote_addr):
            if family == 0:
                raise ValueError("unexpected address family")
            return [((family, proto), (None, None))]
        if family == socket.AF_UNIX:
            for addr in (local_addr, remote_addr):
                if addr is not None and not isinstance(addr, str):
                    raise TypeError("string is expected")
            if local_addr:
                try:
                    remove_stale_unix_path(local_addr)
                except OSError as exc:
                    from asyncio.log import logger

                    logger.error(
                        "Unable to check or remove stale UNIX socket %r: %r", local_addr, exc
                    )
            return [((family, proto), (local_addr, remote_addr))]
        infos_by_key: dict[tuple[int, int], list[Any]] = {}
        for idx, addr in ((0, local_addr), (1, remote_addr)):
            if addr is None:
                continue
            if not (isinstance(addr, tuple) and len(addr) == 2):
                raise TypeError("2-tuple is expected")
            infos = await self._resolve_all(
                addr, family=family, type=socket.SOCK_DGRAM, proto=proto, flags=flags
            )
            for fam, _, pro, _, address in infos:
                infos_by_key.setdefault((fam, pro), [None, None])[idx] = address
        pairs = [
            (key, (pair[0], pair[1]))
            for key, pair in infos_by_key.items()
            if not ((local_addr and pair[0] is None) or (remote_addr and pair[1] is None))
        ]
        if not pairs:
            raise ValueError("can not get address information")
        return pairs
