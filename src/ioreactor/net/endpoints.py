"""Start any mix of TCP, UDP and Unix listeners from address strings (``ioreactor echo``).

One stream :class:`Handler` serves every ``tcp://`` and ``unix://`` listener, one
:class:`DatagramHandler` every ``udp://`` and ``unix-dgram://`` one. Everything is
checked before anything binds (addresses, option names and values, an option that fits
none of the listeners, a missing handler), and starting is all-or-nothing: if one
address cannot be bound, the listeners already started are closed and the error names
that address.

Options given once apply to every listener they fit (``TCP_NODELAY`` to the TCP ones,
``SO_RCVBUF`` to all); one that fits none of them is an error.

Dual-stack: ``[::]:PORT`` serves IPv4 too where the OS allows (``IPV6_V6ONLY=0``, the
Linux default). Listening on both ``0.0.0.0:PORT`` and ``[::]:PORT`` makes the IPv6
socket IPv6-only automatically (else the two would collide on the IPv4 side), unless
``IPV6_V6ONLY`` is given.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Collection, Iterable
from typing import Any

from ioreactor.loop.event_loop import EventLoop
from ioreactor.net.acceptor import BACKLOG, open_listener
from ioreactor.net.address import (
    KINDS,
    STREAM_KINDS,
    Address,
    AddressError,
    format_sockname,
    parse_address,
    to_address,
)
from ioreactor.net.handlers import DatagramHandler, Handler
from ioreactor.net.server import TcpServer
from ioreactor.net.sockopt import SockOpt, SockOptError, parse_sockopts
from ioreactor.net.udp import UdpEndpoint
from ioreactor.net.unix import check_peer

log = logging.getLogger("ioreactor.endpoints")

_WILDCARDS = {socket.AF_INET: ("0.0.0.0",), socket.AF_INET6: ("::", "::0")}


class StreamServer(TcpServer):
    """A :class:`TcpServer` (``tcp://`` or ``unix://``) configured by socket options.

    Options are set on the listener before bind; Linux copies them to each accepted
    socket. The few it does not copy (``TCP_QUICKACK``) are set per accepted socket.
    ``allowed_uids`` (Unix only): connections whose SO_PEERCRED uid is not in it are
    closed at once, before the handler sees them.
    """

    def __init__(
        self,
        loop: EventLoop,
        address: str | Address | tuple[str, int],
        handler: Handler,
        *,
        sockopts: Iterable[SockOpt] = (),
        allowed_uids: Collection[int] | None = None,
        v6only: bool | None = None,
        **options: Any,
    ) -> None:
        address = to_address(address, kinds=STREAM_KINDS)
        opts = tuple(sockopts)
        for opt in opts:
            opt.check(address.kind, address.family)
            if opt.name == "TCP_NODELAY":
                options["nodelay"] = opt.value
        if allowed_uids is not None and not address.is_unix:
            raise ValueError(f"{address}: allowed_uids (SO_PEERCRED) needs a unix:// address")
        super().__init__(loop, address, handler, **options)
        self.sockopts = opts
        self.v6only = v6only
        self.allowed_uids = frozenset(allowed_uids) if allowed_uids is not None else None
        #: Connections closed because their peer's uid was not allowed.
        self.rejected_peers = 0
        self._per_connection = tuple(opt for opt in opts if not opt.spec.inherited)

    def start(self, *args: Any, **kwargs: Any) -> StreamServer:
        """Open the listener with the options, then :meth:`TcpServer.start`."""
        if self._acceptor is None and self._listener is None and kwargs.get("listen", True):
            try:
                self._listener = open_listener(
                    self.address.family,
                    self.address.sockaddr,
                    backlog=self.backlog,
                    reuse_port=self.reuse_port,
                    v6only=self.v6only,
                    sockopts=self.sockopts,
                )
            except OSError as exc:
                if self.address.is_unix:
                    raise  # the Unix errors already name the path and the reason
                raise OSError(exc.errno, f"{self.address}: {exc.strerror}") from None
        super().start(*args, **kwargs)
        return self

    def _on_accept(self, sock: socket.socket, peer: Any) -> None:
        if self.allowed_uids is not None and not check_peer(sock, self.allowed_uids):
            self.rejected_peers += 1
            sock.close()
            return
        for opt in self._per_connection:
            try:
                opt.spec.set(sock, opt.value)
            except OSError as exc:  # the peer already reset it; TcpServer drops it too
                log.debug("%s on an accepted socket: %s", opt, exc)
        super()._on_accept(sock, peer)


def parse_listen_addresses(items: Iterable[str | Address]) -> list[Address]:
    """Parse ``--listen`` values; the same address twice is an error."""
    addresses: list[Address] = []
    for item in items:
        address = item if isinstance(item, Address) else parse_address(item)
        if address in addresses and (address.is_unix or address.port != 0):
            raise AddressError(f"{address} is given more than once")
        addresses.append(address)
    if not addresses:
        raise AddressError("no address to listen on")
    return addresses


class Endpoints:
    """Listeners on several addresses with one handler set; see the module docstring."""

    def __init__(
        self,
        loop: EventLoop,
        addresses: Iterable[str | Address],
        *,
        handler: Handler | None = None,
        datagram_handler: DatagramHandler | None = None,
        sockopts: Iterable[str | SockOpt] = (),
        allowed_uids: Collection[int] | None = None,
        backlog: int = BACKLOG,
    ) -> None:
        self.loop = loop
        self.addresses = parse_listen_addresses(addresses)
        self.sockopts = parse_sockopts(sockopts)
        self.handler = handler
        self.datagram_handler = datagram_handler
        self.allowed_uids = allowed_uids
        self.backlog = backlog
        self.servers: list[StreamServer] = []
        self.datagram_endpoints: list[UdpEndpoint] = []
        self._check()

    def _check(self) -> None:
        for address in self.addresses:
            if address.is_stream and self.handler is None:
                raise ValueError(f"{address}: a stream address needs a stream handler")
            if not address.is_stream and self.datagram_handler is None:
                raise ValueError(f"{address}: a datagram address needs a datagram handler")
        for opt in self.sockopts:
            if not any(self._fits(opt, address) for address in self.addresses):
                kinds = sorted({a.kind for a in self.addresses}, key=KINDS.index)
                raise SockOptError(
                    f"{opt.name} fits none of the listen addresses (it applies to "
                    f"{', '.join(opt.spec.kinds)}"
                    + (" over IPv6" if opt.spec.family == socket.AF_INET6 else "")
                    + f"; the addresses are {', '.join(kinds)})"
                )
        if self.allowed_uids is not None and not any(
            a.is_unix and a.is_stream for a in self.addresses
        ):
            raise ValueError("allowed_uids (SO_PEERCRED) needs a unix:// stream address")

    def _fits(self, opt: SockOpt, address: Address) -> bool:
        try:
            opt.check(address.kind, address.family)
        except SockOptError:
            return False
        return True

    def _v6only(self, address: Address) -> bool | None:
        """True for ``[::]:P`` next to ``0.0.0.0:P`` of the same kind (see module docstring)."""
        if address.family != socket.AF_INET6 or address.host not in _WILDCARDS[socket.AF_INET6]:
            return None
        if address.port == 0 or any(opt.name == "IPV6_V6ONLY" for opt in self.sockopts):
            return None
        for other in self.addresses:
            if (
                other.kind == address.kind
                and other.port == address.port
                and other.host in _WILDCARDS[socket.AF_INET]
            ):
                return True
        return None

    def start(self) -> Endpoints:
        """Bind every address; on any failure close what was started and re-raise."""
        try:
            for address in self.addresses:
                opts = [opt for opt in self.sockopts if self._fits(opt, address)]
                if address.is_stream:
                    assert self.handler is not None
                    server = StreamServer(
                        self.loop,
                        address,
                        self.handler,
                        sockopts=opts,
                        allowed_uids=self.allowed_uids if address.is_unix else None,
                        v6only=self._v6only(address),
                        backlog=self.backlog,
                    )
                    self.servers.append(server)
                    server.start()
                else:
                    assert self.datagram_handler is not None
                    endpoint = UdpEndpoint(
                        self.loop,
                        self.datagram_handler,
                        local=address,
                        sockopts=opts,
                        v6only=self._v6only(address),
                    )
                    self.datagram_endpoints.append(endpoint)
                    endpoint.start()
        except BaseException:
            self.close()
            raise
        return self

    def bound(self) -> list[str]:
        """The addresses actually bound, in the address syntax (ports filled in)."""
        names = [format_sockname(s.address.kind, s.sockname) for s in self.servers]
        names += [format_sockname(e.kind, e.sockname) for e in self.datagram_endpoints]
        return names

    def close(self) -> None:
        """Close every listener and its connections (loop thread); Unix files are removed."""
        for server in self.servers:
            server.close()
        for endpoint in self.datagram_endpoints:
            endpoint.force_close()
