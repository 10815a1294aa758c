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

__version__ = "0.1.0"

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
