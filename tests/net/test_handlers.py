"""Which handler methods a connection calls: ``overrides`` and ``reads_in_place``."""

from __future__ import annotations

from ioreactor.echo import EchoHandler
from ioreactor.net.buffer import Buffer
from ioreactor.net.connection import TcpConnection
from ioreactor.net.handlers import Handler, overrides, reads_in_place


class OwnOnMessage(EchoHandler):
    def on_message(self, conn: TcpConnection, buffer: Buffer) -> None:
        buffer.retrieve_all()


class Both(OwnOnMessage):
    def on_read(self, conn: TcpConnection, data: memoryview) -> int:
        return len(data)


class Inherits(EchoHandler):
    pass


def test_overrides_names_methods_replaced_below_handler() -> None:
    assert overrides(EchoHandler(), "on_message")
    assert not overrides(EchoHandler(), "on_write_complete")
    assert not overrides(Handler(), "on_message")


def test_reads_in_place_only_when_on_read_is_as_derived_as_on_message() -> None:
    assert not reads_in_place(Handler())
    assert reads_in_place(EchoHandler())
    assert reads_in_place(Inherits())
    # A subclass replacing only on_message must see every byte there, not in the
    # on_read it inherited and does not know about.
    assert not reads_in_place(OwnOnMessage())
    assert reads_in_place(Both())
