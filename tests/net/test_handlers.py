"""The callback interfaces: which handler methods a connection calls (``overrides``,
``reads_in_place``), and what each callback says about itself."""

from __future__ import annotations

import logging

import pytest

from ioreactor.echo import EchoHandler
from ioreactor.net.buffer import Buffer
from ioreactor.net.connection import TcpConnection
from ioreactor.net.handlers import (
    ConnectionOwner,
    DatagramHandler,
    Handler,
    overrides,
    reads_in_place,
)


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


def test_every_callback_says_what_it_is_for_in_one_line() -> None:
    for cls in (Handler, DatagramHandler, ConnectionOwner):
        methods = [n for n, v in vars(cls).items() if callable(v) and not n.startswith("_")]
        assert methods, cls
        for name in methods:
            doc = getattr(cls, name).__doc__
            assert doc and "\n" not in doc.strip(), f"{cls.__name__}.{name}: {doc!r}"


def test_datagram_handler_defaults_log_errors_and_drops(caplog: pytest.LogCaptureFixture) -> None:
    class Endpoint:
        max_datagram = 10

    handler = DatagramHandler()
    with caplog.at_level(logging.WARNING, logger="ioreactor.udp"):
        handler.on_error(Endpoint(), ConnectionRefusedError(111, "refused"))  # type: ignore[arg-type]
        handler.on_truncated(Endpoint(), 99, ("127.0.0.1", 9))  # type: ignore[arg-type]
    messages = [r.getMessage() for r in caplog.records]
    assert any("refused" in m for m in messages)
    assert any("99-byte datagram" in m and "limit 10 bytes" in m for m in messages)
