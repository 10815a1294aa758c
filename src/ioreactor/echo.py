"""The echo service: every byte received is sent back (RFC 862 over TCP)."""

from __future__ import annotations

from ioreactor.net.buffer import Buffer
from ioreactor.net.connection import TcpConnection
from ioreactor.net.handler import Handler


class EchoHandler(Handler):
    """Sends back whatever arrives; the loop coalesces it into one send per iteration."""

    def on_read(self, conn: TcpConnection, data: memoryview) -> int:
        conn.send(bytes(data))
        return len(data)

    def on_message(self, conn: TcpConnection, buffer: Buffer) -> None:
        conn.send(buffer.read_all())
