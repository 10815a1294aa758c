"""Connections, servers and clients on the reactor."""

from ioreactor.net.address import Address, AddressError, parse_address, to_address
from ioreactor.net.buffer import Buffer
from ioreactor.net.client import TcpClient
from ioreactor.net.connection import TcpConnection
from ioreactor.net.handlers import DatagramHandler, Handler
from ioreactor.net.server import TcpServer
from ioreactor.net.sockopt import KeepAlive

__all__ = [
    "Address",
    "AddressError",
    "Buffer",
    "DatagramHandler",
    "Handler",
    "KeepAlive",
    "TcpClient",
    "TcpConnection",
    "TcpServer",
    "parse_address",
    "to_address",
]
