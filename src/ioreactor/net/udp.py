"""Datagram endpoints on the loop: UDP and Unix datagram sockets, servers and clients.

Data flow::

    kernel -> recvfrom_into(loop.scratch) -> handler.on_datagram(endpoint, data, addr)
    endpoint.send(data, addr) -> sendto() now; on EAGAIN -> queue -> EPOLLOUT -> sendto()

Unlike a stream, a datagram keeps its boundaries, so there is nothing to coalesce: each
``send`` is one ``sendto`` at once, and only what the kernel refuses (EAGAIN: the send
buffer is full) waits in a queue for the socket to turn writable. The queue has its own
high water mark: above it reading pauses (the kernel then drops what overflows the
receive buffer, which is UDP's contract) and ``on_high_water_mark`` fires.

Limits. A UDP datagram over IPv4 carries at most 65,507 bytes (65,535 minus the IP and
UDP headers); sending more is a ``ValueError`` naming the size, never a silent
truncation. On receive, ``MSG_TRUNC`` makes Linux return a datagram's real length even
when the buffer was shorter, so a datagram above ``max_datagram`` is detected, dropped
and reported to ``on_truncated`` instead of being delivered cut short.

Connected UDP (the course's point). ``sendto`` on an unconnected socket to a port where
nobody listens "succeeds"; the ICMP port-unreachable that comes back is dropped because
the socket has no peer to attribute it to, so a client waiting for a reply hangs. After
``connect()`` the kernel keeps that error on the socket: the loop sees EPOLLERR and the
endpoint reports ``on_error(endpoint, ConnectionRefusedError)``. Sends on a connected
endpoint skip the per-call address.
"""

from __future__ import annotations

import collections
import errno
import logging
import socket
import sys
import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ioreactor.loop.poller import ERROR, HUP, READ, WRITE
from ioreactor.net.address import DATAGRAM_KINDS, Address, to_address
from ioreactor.net.handlers import DatagramHandler
from ioreactor.net.sockopt import SockOpt, apply_sockopts
from ioreactor.net.unix import UnixSocket, bind_unix

if TYPE_CHECKING:
    from ioreactor.loop.event_loop import EventLoop
    from ioreactor.loop.timers import TimerHandle

log = logging.getLogger("ioreactor.udp")

#: Largest UDP payload over IPv4: 65,535 - 20 (IP header) - 8 (UDP header).
MAX_DATAGRAM = 65_507
#: Queued outgoing bytes that pause reading; reading resumes at the low water mark.
HIGH_WATER_MARK = 1024 * 1024
LOW_WATER_MARK = 256 * 1024
#: Datagrams read per readiness event before the loop serves other fds.
READ_BATCH = 64
#: Wait before retrying a send when the socket reported writable but took nothing (a
#: Unix datagram receiver's queue is full: its sender's poll cannot wait for that).
WRITE_RETRY_DELAY = 0.002
#: Seconds a graceful close() waits for the queued datagrams to leave (a Unix datagram
#: peer that never reads would keep the endpoint closing for ever); then it drops them.
CLOSE_TIMEOUT = 30.0

_LINUX = sys.platform.startswith("linux")
#: With MSG_TRUNC, Linux returns a datagram's real length even if the buffer was shorter.
_RECV_FLAGS = socket.MSG_TRUNC if _LINUX else 0
_get_ident = threading.get_ident

OPEN = 1
CLOSING = 2
CLOSED = 3


class UdpEndpoint:
    """A datagram socket (``udp://`` or ``unix-dgram://``) driven by a loop.

    ``local``: bind here (a server, or a client with a fixed source address).
    ``remote``: connect here (a connected client; replies come only from it).
    At least one is needed; both must be of one kind and family.
    """

    __slots__ = (
        "_above_high",
        "_close_timer",
        "_events",
        "_on_datagram",
        "_queue",
        "_queued",
        "_recv",
        "_retry_timer",
        "_send",
        "_sendto",
        "_state",
        "close_timeout",
        "context",
        "error",
        "fd",
        "handler",
        "high_water_mark",
        "kind",
        "local",
        "loop",
        "low_water_mark",
        "max_datagram",
        "peer",
        "read_batch",
        "remote",
        "sock",
        "sockopts",
        "truncated",
        "v6only",
    )

    def __init__(
        self,
        loop: EventLoop,
        handler: DatagramHandler,
        *,
        local: str | Address | tuple[str, int] | None = None,
        remote: str | Address | tuple[str, int] | None = None,
        sockopts: Iterable[SockOpt] = (),
        high_water_mark: int = HIGH_WATER_MARK,
        low_water_mark: int = LOW_WATER_MARK,
        max_datagram: int = MAX_DATAGRAM,
        read_batch: int = READ_BATCH,
        v6only: bool | None = None,
    ) -> None:
        if low_water_mark > high_water_mark:
            raise ValueError("low_water_mark must not exceed high_water_mark")
        if not 1 <= max_datagram <= len(loop.scratch):
            raise ValueError(f"max_datagram must be 1-{len(loop.scratch)}, got {max_datagram}")
        self.loop = loop
        self.handler = handler
        self.local = _datagram_address(local)
        self.remote = _datagram_address(remote)
        first = self.local or self.remote
        if first is None:
            raise ValueError("a datagram endpoint needs a local address, a remote one, or both")
        if self.local and self.remote and self.local.family != self.remote.family:
            raise ValueError(f"local {self.local} and remote {self.remote} differ in family")
        self.kind = first.kind
        self.sockopts = tuple(sockopts)
        for opt in self.sockopts:
            opt.check(first.kind, first.family)
        self.v6only = v6only
        self.high_water_mark = high_water_mark
        self.low_water_mark = low_water_mark
        self.max_datagram = max_datagram
        self.read_batch = read_batch
        #: Free for the handler: per-endpoint state.
        self.context: Any = None
        #: The last error reported to ``on_error``.
        self.error: OSError | None = None
        #: Datagrams dropped because they exceeded ``max_datagram``.
        self.truncated = 0
        #: The connected peer as the kernel reports it, or None when unconnected.
        self.peer: Any = None
        self.fd = -1
        self.sock: socket.socket | None = None
        self._state = OPEN
        self._events = 0
        self._queue: collections.deque[tuple[bytes, Any]] = collections.deque()
        self._queued = 0
        self._above_high = False
        self._retry_timer: TimerHandle | None = None
        self._close_timer: TimerHandle | None = None
        #: Seconds a graceful close() waits for queued datagrams (None: no limit).
        self.close_timeout: float | None = CLOSE_TIMEOUT
        self._on_datagram = handler.on_datagram

    def __repr__(self) -> str:
        state = {OPEN: "open", CLOSING: "closing", CLOSED: "closed"}[self._state]
        where = self.remote or self.local or self.kind
        return f"<UdpEndpoint {where} fd={self.fd} {state}>"

    # -- state -----------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._state == CLOSED

    @property
    def reading(self) -> bool:
        return bool(self._events & READ)

    @property
    def output_size(self) -> int:
        """Bytes of queued datagrams the kernel has not taken yet."""
        return self._queued

    @property
    def sockname(self) -> Any:
        if self.sock is None or self.fd < 0:
            raise RuntimeError("endpoint is not started")
        return self.sock.getsockname()

    @property
    def port(self) -> int:
        port: int = self.sockname[1]
        return port

    # -- lifecycle (loop thread) ---------------------------------------------------------

    def start(self) -> UdpEndpoint:
        """Open, bind/connect and start reading (call before the loop runs, or on it)."""
        if self.fd >= 0:
            return self
        if self._state != OPEN:
            raise RuntimeError(f"{self!r} is closed")
        self.sock = sock = self._open()
        sock.setblocking(False)
        self._recv = sock.recvfrom_into
        self._send = sock.send
        self._sendto = sock.sendto
        if self.remote is not None:
            try:
                self._connect_socket(self.remote)
            except BaseException:
                sock.close()
                self._state = CLOSED
                raise
        self.fd = sock.fileno()
        self._events = READ
        self.loop.watch(self.fd, READ, self._handle_event)
        return self

    def _open(self) -> socket.socket:
        address = self.local or self.remote
        assert address is not None
        if address.is_unix:
            sock: socket.socket = UnixSocket(socket.AF_UNIX, socket.SOCK_DGRAM)
        else:
            sock = socket.socket(address.family, socket.SOCK_DGRAM)
        try:
            if self.v6only is not None and address.family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, int(self.v6only))
            apply_sockopts(sock, self.sockopts)
            if self.local is None:
                if address.is_unix and _LINUX:
                    sock.bind("")  # autobind an abstract name, so replies can reach us
            elif address.is_unix:
                bind_unix(sock, self.local)
            else:
                try:
                    sock.bind(self.local.sockaddr)
                except OSError as exc:
                    raise OSError(exc.errno, f"{self.local}: {exc.strerror}") from None
        except BaseException:
            sock.close()
            raise
        return sock

    def connect(self, address: str | Address | tuple[str, int]) -> None:
        """Connect (loop thread): later sends skip the address, and errors surface."""
        remote = _datagram_address(address)
        assert remote is not None
        if remote.kind != self.kind:
            raise ValueError(f"{remote} is not a {self.kind} address")
        self.remote = remote
        self._connect_socket(remote)

    def _connect_socket(self, remote: Address) -> None:
        sock = self.sock
        assert sock is not None, "connect() after start()"
        try:
            sock.connect(remote.sockaddr)
        except OSError as exc:
            raise OSError(exc.errno, f"connect to {remote}: {exc.strerror}") from None
        self.peer = sock.getpeername()

    def _set_events(self, events: int) -> None:
        if events != self._events and self._state != CLOSED:
            self._events = events
            self.loop.modify(self.fd, events)

    # -- input -------------------------------------------------------------------------------

    def _handle_event(self, mask: int) -> None:
        if mask & WRITE:
            self._handle_write()
        if self._events & READ:
            if mask & (READ | ERROR | HUP):
                self._handle_read()
        elif mask & ERROR and self._state != CLOSED:
            self._report_pending_error()  # not reading: SO_ERROR clears the condition

    def _handle_read(self) -> None:
        recv = self._recv
        view = self.loop.scratch_view
        limit = self.max_datagram
        size = limit if _RECV_FLAGS else limit + 1
        on_datagram = self._on_datagram
        for _ in range(self.read_batch):
            try:
                n, addr = recv(view, size, _RECV_FLAGS)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self._report_error(exc)
                if not self._events & READ:
                    return
                continue
            if n > limit:
                self._truncated(n, addr)
            else:
                try:
                    on_datagram(self, view[:n].tobytes(), addr)
                except Exception:
                    log.exception("%r: on_datagram failed for a datagram from %s", self, addr)
            if not self._events & READ:
                return  # paused above the high water mark, or closed
        if self.loop.poller.edge_triggered:
            # The batch is spent but datagrams may remain, and an edge-triggered poller
            # will not report them again: finish on the next iteration, after other fds.
            self.loop.call_soon(self._resume_read)

    def _resume_read(self) -> None:
        if self._events & READ:
            self._handle_read()

    def _truncated(self, size: int, addr: Any) -> None:
        self.truncated += 1
        try:
            self.handler.on_truncated(self, size, addr)
        except Exception:
            log.exception("%r: on_truncated failed", self)

    def _report_pending_error(self) -> None:
        assert self.sock is not None
        err = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            self._report_error(OSError(err, errno.errorcode.get(err, str(err))))

    def _report_error(self, exc: OSError) -> None:
        self.error = exc
        try:
            self.handler.on_error(self, exc)
        except Exception:
            log.exception("%r: on_error failed", self)

    # -- output ----------------------------------------------------------------------------

    def send(self, data: bytes | bytearray | memoryview, addr: Any = None) -> None:
        """Send one datagram to ``addr`` (a sockaddr; None on a connected endpoint). Any thread.

        ``ValueError`` if it exceeds ``max_datagram``, if there is no destination, or if
        ``addr`` is not the connected peer.
        """
        n = len(data)
        if n > self.max_datagram:
            raise ValueError(
                f"datagram of {n} bytes exceeds the {self.max_datagram}-byte limit "
                f"(a UDP datagram over IPv4 carries at most {MAX_DATAGRAM} bytes)"
            )
        if addr is None:
            if self.peer is None:
                raise ValueError(f"{self!r} is not connected: send(data, addr) needs an address")
        elif self.peer is not None:
            if addr != self.peer:
                raise ValueError(f"{self!r} is connected to {self.peer!r}, not {addr!r}")
            addr = None
        if self.loop._thread_id != _get_ident():
            self.loop.call_soon_threadsafe(self._send_in_loop, bytes(data), addr)
            return
        # The common case inline (one call per datagram): in the loop, nothing queued.
        if self._state == OPEN and not self._queue:
            try:
                if addr is None:
                    self._send(data)
                else:
                    self._sendto(data, addr)
                return
            except (BlockingIOError, InterruptedError):
                pass
            except OSError as exc:
                if self._send_failed(exc, data):
                    return
            self._enqueue(bytes(data), addr)
            return
        self._send_in_loop(data, addr)

    def _send_in_loop(self, data: bytes | bytearray | memoryview, addr: Any) -> None:
        if self._state != OPEN:
            log.debug("%r: dropping a %d-byte datagram sent after close", self, len(data))
            return
        if self._queue or not self._transmit(data, addr):
            self._enqueue(bytes(data), addr)

    def _transmit(self, data: bytes | bytearray | memoryview, addr: Any) -> bool:
        """One datagram to the kernel: True when done with it (sent, or failed and
        reported), False when it must wait (EAGAIN)."""
        try:
            if addr is None:
                self._send(data)
            else:
                self._sendto(data, addr)
            return True
        except (BlockingIOError, InterruptedError):
            return False
        except OSError as exc:
            return self._send_failed(exc, data)

    def _send_failed(self, exc: OSError, data: bytes | bytearray | memoryview) -> bool:
        """Report a failed send (once); True when done with the datagram, False if it waits."""
        self._report_error(exc)
        if exc.errno != errno.ECONNREFUSED or self.peer is None or self._state == CLOSED:
            return True
        # A connected socket held an earlier datagram's ICMP port-unreachable, and the
        # kernel failed this send with it without sending. Try this datagram once more.
        # If that fails too, the datagram is dropped: its send has had its one report.
        try:
            self._send(data)
        except (BlockingIOError, InterruptedError):
            return False
        except OSError:
            pass
        return True

    def _enqueue(self, data: bytes, addr: Any) -> None:
        self._queue.append((data, addr))
        self._queued += len(data)
        if len(self._queue) == 1 and self._retry_timer is None:
            self._set_events(self._events | WRITE)
        if self._queued >= self.high_water_mark and not self._above_high:
            self._above_high = True
            self._set_events(self._events & ~READ)
            try:
                self.handler.on_high_water_mark(self, self._queued)
            except Exception:
                log.exception("%r: on_high_water_mark failed", self)

    def _handle_write(self) -> None:
        queue = self._queue
        progress = False
        while queue:
            data, addr = queue[0]
            if not self._transmit(data, addr):
                if not progress:  # writable, yet nothing fits: poll cannot wait for this
                    self._set_events(self._events & ~WRITE)
                    self._retry_timer = self.loop.call_later(WRITE_RETRY_DELAY, self._retry)
                return
            if self._state == CLOSED:
                return  # on_error closed the endpoint (and emptied the queue)
            progress = True
            queue.popleft()
            self._queued -= len(data)
            if self._above_high and self._queued <= self.low_water_mark:
                self._above_high = False
                if self._state == OPEN:
                    self._set_events(self._events | READ)
        self._set_events(self._events & ~WRITE)
        if self._state == CLOSING:
            self._close_now()
            return
        try:
            self.handler.on_write_complete(self)
        except Exception:
            log.exception("%r: on_write_complete failed", self)

    def _retry(self) -> None:
        self._retry_timer = None
        if self._state != CLOSED and self._queue:
            self._set_events(self._events | WRITE)

    # -- closing ---------------------------------------------------------------------------

    def close(self) -> None:
        """Close once queued datagrams have left; stop reading now. Any thread."""
        self.loop.run_in_loop(self._close_in_loop)

    def _close_in_loop(self) -> None:
        if self._state != OPEN:
            return
        if not self._queue:
            self._close_now()
            return
        self._state = CLOSING
        self._set_events(self._events & ~READ)
        if self.close_timeout is not None:
            self._close_timer = self.loop.call_later(self.close_timeout, self._close_expired)

    def _close_expired(self) -> None:
        self._close_timer = None
        if self._state == CLOSING:
            log.info(
                "%r: %d queued datagrams not taken in %.1f s; dropping them",
                self,
                len(self._queue),
                self.close_timeout,
            )
            self._close_now()

    def force_close(self) -> None:
        """Close now, dropping queued datagrams. Any thread."""
        self.loop.run_in_loop(self._close_now)

    def _close_now(self) -> None:
        if self._state == CLOSED:
            return
        self._state = CLOSED
        for timer in (self._retry_timer, self._close_timer):
            if timer is not None:
                timer.cancel()
        self._retry_timer = self._close_timer = None
        if self.fd >= 0:
            self.loop.unwatch(self.fd)
        self._events = 0
        if self.sock is not None:
            self.sock.close()  # a UnixSocket also removes its socket file
        self._queue.clear()
        self._queued = 0
        try:
            self.handler.on_close(self)
        except Exception:
            log.exception("%r: on_close failed", self)


def _datagram_address(value: str | Address | tuple[str, int] | None) -> Address | None:
    if value is None:
        return None
    return to_address(value, default_kind="udp", kinds=DATAGRAM_KINDS)


def udp_server(
    loop: EventLoop,
    address: str | Address | tuple[str, int],
    handler: DatagramHandler,
    **options: Any,
) -> UdpEndpoint:
    """A started endpoint bound to ``address`` (``udp://`` or ``unix-dgram://``)."""
    return UdpEndpoint(loop, handler, local=address, **options).start()


def udp_client(
    loop: EventLoop,
    address: str | Address | tuple[str, int],
    handler: DatagramHandler,
    **options: Any,
) -> UdpEndpoint:
    """A started endpoint connected to ``address``: ``send(data)`` needs no address."""
    return UdpEndpoint(loop, handler, remote=address, **options).start()
