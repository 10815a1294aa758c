"""Which connection and acceptor classes serve a loop: readiness or completion mode.

::

    loop.completion_mode  False -> TcpConnection, Acceptor          (Python calls accept/recv/send)
                          True  -> UringConnection, UringAcceptor   (the kernel does, io_uring)
    with TLS              False -> TlsConnection; True -> UringTlsConnection

The loop layer only says which mode it runs in; the net layer decides what that means
for its channels, so the loop imports nothing of the net layer. The io_uring classes
are imported on first use by a completion-mode loop: other programs never load ctypes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ioreactor.net.acceptor import Acceptor
from ioreactor.net.connection import TcpConnection

if TYPE_CHECKING:
    from ioreactor.loop.event_loop import EventLoop
    from ioreactor.net.tls import TlsStream


def connection_class(loop: EventLoop) -> type[TcpConnection]:
    """The class of the connections ``loop`` serves (what servers and clients build)."""
    if loop.completion_mode:
        from ioreactor.net.uring.connection import UringConnection

        return UringConnection
    return TcpConnection


def tls_connection_class(loop: EventLoop) -> type[TlsStream]:
    """The class of the TLS connections ``loop`` serves (imported on first use)."""
    if loop.completion_mode:
        from ioreactor.net.uring.tls import UringTlsConnection

        return UringTlsConnection
    from ioreactor.net.tls import TlsConnection

    return TlsConnection


def acceptor_class(loop: EventLoop) -> type[Acceptor]:
    """The class of the acceptors ``loop`` serves (what servers build)."""
    if loop.completion_mode:
        from ioreactor.net.uring.acceptor import UringAcceptor

        return UringAcceptor
    return Acceptor
