"""The echo service: every byte received is sent back (RFC 862 over TCP, UDP and Unix).

``EchoHandler`` for streams, ``DatagramEchoHandler`` for datagrams, and what
``ioreactor echo --listen ...`` runs: :func:`start_echo` on a loop, :func:`serve_echo`
in this process until SIGTERM.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Collection, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from ioreactor.loop.backends import new_loop
from ioreactor.loop.event_loop import EventLoop
from ioreactor.net.acceptor import BACKLOG
from ioreactor.net.address import Address
from ioreactor.net.buffer import Buffer
from ioreactor.net.connection import TcpConnection
from ioreactor.net.endpoints import Endpoints
from ioreactor.net.handlers import DatagramHandler, Handler
from ioreactor.net.sockopt import SockOpt
from ioreactor.net.udp import UdpEndpoint

try:
    import cython
except ImportError:  # the pure build runs without Cython installed
    import ioreactor._cython as cython

# (Nested: see net/connection.py.)
if not cython.compiled:  # noqa: SIM102
    if TYPE_CHECKING:  # the compiled build's copy of a read (loop/csysio.pxd)
        from ioreactor.loop.csysio import scratch_bytes

log = logging.getLogger("ioreactor.echo")


class EchoHandler(Handler):
    """Sends back whatever arrives; the loop coalesces it into one send per iteration."""

    def on_read(self, conn: TcpConnection, data: memoryview) -> int:
        conn.send(bytes(data))
        return len(data)

    reads_scratch = True

    def _read_scratch(self, conn: TcpConnection, scratch: bytearray, size: int) -> int:
        conn.send(scratch_bytes(scratch, size))
        return size

    def on_message(self, conn: TcpConnection, buffer: Buffer) -> None:
        conn.send(buffer.read_all())


class DatagramEchoHandler(DatagramHandler):
    """Sends every datagram back to where it came from (RFC 862 over UDP)."""

    def on_datagram(self, endpoint: UdpEndpoint, data: bytes, addr: Any) -> None:
        if addr is not None or endpoint.peer is not None:  # None: an unbound Unix sender
            endpoint.send(data, addr)


def start_echo(
    loop: EventLoop,
    addresses: Sequence[str | Address],
    *,
    sockopts: Iterable[str | SockOpt] = (),
    allowed_uids: Collection[int] | None = None,
    backlog: int = BACKLOG,
) -> Endpoints:
    """Echo on every address, any mix of kinds: what ``ioreactor echo --listen ...`` runs."""
    return Endpoints(
        loop,
        addresses,
        handler=EchoHandler(),
        datagram_handler=DatagramEchoHandler(),
        sockopts=sockopts,
        allowed_uids=allowed_uids,
        backlog=backlog,
    ).start()


def serve_echo(
    addresses: Sequence[str | Address],
    *,
    sockopts: Iterable[str | SockOpt] = (),
    allowed_uids: Collection[int] | None = None,
    poller: str | None = None,
    backlog: int = BACKLOG,
) -> int:
    """Echo on ``addresses`` in this process until SIGINT, SIGTERM or SIGHUP; the exit status.

    Bad addresses or options raise before anything binds (:class:`AddressError`,
    :class:`SockOptError`, ``ValueError``); a bind failure raises ``OSError`` naming the
    address, with nothing left open.
    """
    loop = new_loop(poller, name="echo")
    try:
        endpoints = start_echo(
            loop, addresses, sockopts=sockopts, allowed_uids=allowed_uids, backlog=backlog
        )
    except BaseException:
        loop.close()
        raise
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(sig, loop.stop)
    log.info("echo on %s (poller %s)", ", ".join(endpoints.bound()), loop.poller.name)
    try:
        loop.run()
    finally:
        endpoints.close()
        loop.close()
    return 0
