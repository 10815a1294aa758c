"""ioreactor: a reactor networking framework in Python.

poller -> event loop -> connection -> input Buffer -> codec -> handler
       -> conn.send() -> output chunks -> one send per loop iteration -> kernel
"""

from ioreactor.loop import EventLoop, available_pollers
from ioreactor.net import (
    Address,
    AddressError,
    Buffer,
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
    "EventLoop",
    "Handler",
    "KeepAlive",
    "TcpClient",
    "TcpConnection",
    "TcpServer",
    "available_pollers",
    "parse_address",
]
