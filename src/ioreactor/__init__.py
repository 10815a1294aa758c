"""ioreactor: a reactor networking framework in Python.

poller -> event loop -> connection -> input Buffer -> codec -> handler
       -> conn.send() -> output chunks -> one send per loop iteration -> kernel

What this package exports (everything else lives in its layer: ``ioreactor.loop``,
``ioreactor.net``, ``ioreactor.codec``, ``ioreactor.http``, ``ioreactor.multicore``):

The reactor
    :class:`EventLoop` (``EventLoop()``, ``EventLoop("poll")``, ``EventLoop("uring")``...)
    and :func:`available_pollers`, the backend names it takes here.
Streams and addresses
    :class:`TcpServer`, :class:`TcpClient`, :class:`TcpConnection`, :class:`Buffer`,
    :class:`KeepAlive`, :class:`Address`, :func:`parse_address`, :class:`AddressError`.
The callbacks you implement (one handler object serves every connection)
    :class:`Handler` (stream connections), :class:`DatagramHandler` (UDP and Unix
    datagrams), :class:`FrameHandler` (frames decoded by a codec),
    :class:`IdleStateHandler` (a Handler told about idle connections),
    :class:`HeartbeatHandler` (a FrameHandler with heartbeats: data and pong callbacks).
``__version__``
    The installed distribution's version (read from its metadata on first use).
:func:`build_kind`
    ``"compiled (Cython)"`` or ``"pure Python"``: which build of the hot path runs
    (``IOREACTOR_NO_EXTENSIONS=1`` forces the pure one; see :mod:`ioreactor.build`).
"""

from ioreactor import build as _build

if _build.extensions_disabled():
    _build.force_pure()  # before any compiled module is imported

from ioreactor.build import build_kind
from ioreactor.codec import FrameHandler
from ioreactor.heartbeat import HeartbeatHandler
from ioreactor.idle import IdleStateHandler
from ioreactor.loop import EventLoop, available_pollers
from ioreactor.net import (
    Address,
    AddressError,
    Buffer,
    DatagramHandler,
    Handler,
    KeepAlive,
    TcpClient,
    TcpConnection,
    TcpServer,
    parse_address,
)


def __getattr__(name: str) -> str:
    # ``__version__`` on first use: importlib.metadata is not loaded by ``import ioreactor``.
    if name == "__version__":
        from ioreactor.build import version

        return version()
    raise AttributeError(f"module 'ioreactor' has no attribute {name!r}")


__all__ = [
    "Address",
    "AddressError",
    "Buffer",
    "DatagramHandler",
    "EventLoop",
    "FrameHandler",
    "Handler",
    "HeartbeatHandler",
    "IdleStateHandler",
    "KeepAlive",
    "TcpClient",
    "TcpConnection",
    "TcpServer",
    "__version__",
    "available_pollers",
    "build_kind",
    "parse_address",
]
