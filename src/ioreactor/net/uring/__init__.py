"""The net layer's channels for a completion-mode (io_uring) loop.

::

    kernel accept/recv/send (io_uring) -> completion -> UringAcceptor / UringConnection
                                       -> the read and flush steps of TcpConnection -> handler

The loop layer (:mod:`ioreactor.loop.uring`) owns the ring, the completion poller and
its operation table; these classes submit operations to it and handle their
completions. :func:`ioreactor.net.channels.connection_class` and ``acceptor_class`` pick
them for a loop whose ``completion_mode`` is true; importing this package loads ctypes,
which only such a loop has already done.
"""

from ioreactor.net.uring.acceptor import UringAcceptor
from ioreactor.net.uring.connection import UringConnection

__all__ = ["UringAcceptor", "UringConnection"]
