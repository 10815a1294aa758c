"""Datagram endpoints: echo on every poller and kind, size limits, truncation, connected
UDP errors, the send queue's high water mark, closing."""

from __future__ import annotations

import errno
import os
import select
import socket
import uuid
from pathlib import Path
from typing import Any

import pytest
from net_support import fd_count, needs_ipv6

from ioreactor.net.address import AddressError
from ioreactor.net.handlers import DatagramHandler
from ioreactor.net.sockopt import parse_sockopt
from ioreactor.net.udp import MAX_DATAGRAM, UdpEndpoint, udp_client, udp_server
from ioreactor.testing import LoopThread

TIMEOUT = 10.0


class Echo(DatagramHandler):
    def on_datagram(self, endpoint: UdpEndpoint, data: bytes, addr: Any) -> None:
        endpoint.send(data, addr)


class Recorder(DatagramHandler):
    """Records every callback, in order."""

    def __init__(self) -> None:
        self.datagrams: list[tuple[bytes, Any]] = []
        self.errors: list[OSError] = []
        self.truncated: list[tuple[int, Any]] = []
        self.events: list[str] = []

    def on_datagram(self, endpoint: UdpEndpoint, data: bytes, addr: Any) -> None:
        self.datagrams.append((data, addr))

    def on_error(self, endpoint: UdpEndpoint, exc: OSError) -> None:
        self.errors.append(exc)

    def on_truncated(self, endpoint: UdpEndpoint, size: int, addr: Any) -> None:
        self.truncated.append((size, addr))

    def on_high_water_mark(self, endpoint: UdpEndpoint, size: int) -> None:
        self.events.append("high")

    def on_write_complete(self, endpoint: UdpEndpoint) -> None:
        self.events.append("drained")

    def on_close(self, endpoint: UdpEndpoint) -> None:
        self.events.append("closed")


def _closed_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def _blocking_client(family: int, target: Any) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.settimeout(TIMEOUT)
        if family == socket.AF_UNIX:
            sock.bind("")  # autobind: the echo needs an address to answer
        sock.connect(target)
    except BaseException:
        sock.close()
        raise
    return sock


def test_echo_on_every_poller_reads_in_bounded_batches(loop_thread: LoopThread) -> None:
    """More datagrams than one batch arrive at once: all are echoed (epoll-et included)."""
    server = loop_thread.call(
        lambda: udp_server(loop_thread.loop, "udp://127.0.0.1:0", Echo(), read_batch=4)
    )
    payloads = [os.urandom(1 + i * 7) for i in range(60)]
    with _blocking_client(socket.AF_INET, ("127.0.0.1", server.port)) as client:
        for payload in payloads:
            client.send(payload)
        echoed = [client.recv(65536) for _ in payloads]
    assert sorted(echoed) == sorted(payloads)
    loop_thread.call(server.close)


@pytest.mark.parametrize(
    "kind", ["udp4", pytest.param("udp6", marks=needs_ipv6), "unix-dgram", "abstract"]
)
def test_echo_over_every_datagram_kind(kind: str, tmp_path: Path) -> None:
    address, family = {
        "udp4": ("udp://127.0.0.1:0", socket.AF_INET),
        "udp6": ("udp://[::1]:0", socket.AF_INET6),
        "unix-dgram": (f"unix-dgram://{tmp_path}/echo.sock", socket.AF_UNIX),
        "abstract": (f"unix-dgram://@ioreactor-{uuid.uuid4().hex}", socket.AF_UNIX),
    }[kind]
    with LoopThread() as lt:
        server = lt.call(udp_server, lt.loop, address, Echo())
        with _blocking_client(family, lt.call(lambda: server.sockname)) as client:
            for size in (0, 1, 512, 9000):
                payload = os.urandom(size)
                client.send(payload)
                assert client.recv(65536) == payload
        lt.call(server.close)


def test_largest_datagram_round_trips_and_one_byte_more_is_refused() -> None:
    with LoopThread() as lt:
        server = lt.call(udp_server, lt.loop, "udp://127.0.0.1:0", Echo())
        recorder = Recorder()
        client = lt.call(udp_client, lt.loop, ("127.0.0.1", server.port), recorder)
        payload = os.urandom(MAX_DATAGRAM)
        client.send(payload)
        assert lt.wait_until(lambda: recorder.datagrams, TIMEOUT)
        assert recorder.datagrams[0][0] == payload
        with pytest.raises(ValueError, match="datagram of 65508 bytes exceeds the 65507-byte"):
            client.send(payload + b"x")
        assert recorder.truncated == [] and recorder.errors == []
        lt.call(client.close)
        lt.call(server.close)


def test_oversized_receive_is_detected_dropped_and_reported() -> None:
    """MSG_TRUNC gives the real size of a datagram larger than max_datagram."""
    with LoopThread() as lt:
        recorder = Recorder()
        server = lt.call(
            lambda: udp_server(lt.loop, "udp://127.0.0.1:0", recorder, max_datagram=1000)
        )
        with _blocking_client(socket.AF_INET, ("127.0.0.1", server.port)) as client:
            client.send(b"a" * 1001)
            client.send(b"b" * 5000)
            client.send(b"c" * 1000)
            assert lt.wait_until(lambda: recorder.datagrams, TIMEOUT)
            sent_from = client.getsockname()
        assert [size for size, _ in recorder.truncated] == [1001, 5000]
        assert recorder.truncated[0][1] == sent_from
        assert recorder.datagrams == [(b"c" * 1000, sent_from)]
        assert lt.call(lambda: server.truncated) == 2
        with pytest.raises(ValueError, match="1001 bytes exceeds the 1000-byte limit"):
            server.send(b"x" * 1001, sent_from)
        lt.call(server.close)


def test_unix_datagram_above_the_limit_is_reported_not_cut(tmp_path: Path) -> None:
    """Unix datagrams may exceed 65,507 bytes (up to the send buffer): still no silent cut."""
    with LoopThread() as lt:
        recorder = Recorder()
        path = f"{tmp_path}/big.sock"
        server = lt.call(udp_server, lt.loop, f"unix-dgram://{path}", recorder)
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as client:
            client.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 256 * 1024)
            client.sendto(b"z" * 100_000, path)
            client.sendto(b"ok", path)
        assert lt.wait_until(lambda: recorder.datagrams, TIMEOUT)
        assert [size for size, _ in recorder.truncated] == [100_000]
        assert [data for data, _ in recorder.datagrams] == [b"ok"]
        lt.call(server.close)


def test_connected_udp_reports_port_unreachable() -> None:
    """The course's point: after connect(), the ICMP error surfaces as ECONNREFUSED."""
    with LoopThread() as lt:
        recorder = Recorder()
        client = lt.call(udp_client, lt.loop, f"udp://127.0.0.1:{_closed_udp_port()}", recorder)
        client.send(b"anyone?")
        assert lt.wait_until(lambda: recorder.errors, TIMEOUT)
        assert recorder.errors[0].errno == errno.ECONNREFUSED
        assert not lt.call(lambda: client.closed)  # the endpoint stays usable
        client.send(b"again?")
        assert lt.wait_until(lambda: len(recorder.errors) == 2, TIMEOUT)
        lt.call(client.close)


def test_a_send_that_meets_a_pending_refusal_reports_it_and_still_goes_out() -> None:
    """The kernel fails the next send with an earlier datagram's ICMP error (without
    sending it): the endpoint reports that error and sends the datagram once more."""
    with LoopThread() as lt:
        recorder = Recorder()
        client = lt.call(udp_client, lt.loop, f"udp://127.0.0.1:{_closed_udp_port()}", recorder)

        def send_into_a_pending_error() -> None:
            client.send(b"first")
            poller = select.poll()  # wait for the ICMP without consuming it
            poller.register(client.sock.fileno(), select.POLLERR)
            assert poller.poll(TIMEOUT * 1000), "no ICMP port-unreachable came back"
            client.send(b"second")  # fails with ECONNREFUSED, reported, sent again

        lt.call(send_into_a_pending_error)
        # one error from the second send, one from the ICMP the resent datagram earned
        assert lt.wait_until(lambda: len(recorder.errors) == 2, TIMEOUT)
        assert all(e.errno == errno.ECONNREFUSED for e in recorder.errors)
        lt.call(client.close)


def test_unix_datagram_peer_gone_reports_each_send_once(tmp_path: Path) -> None:
    path = f"{tmp_path}/peer.sock"
    peer = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    peer.bind(path)
    with LoopThread() as lt:
        recorder = Recorder()
        client = lt.call(udp_client, lt.loop, f"unix-dgram://{path}", recorder)
        peer.close()
        lt.call(lambda: [client.send(b"x") for _ in range(3)])
        assert lt.wait_until(lambda: len(recorder.errors) >= 3, TIMEOUT)
        assert lt.call(lambda: len(recorder.errors)) == 3  # one per send, the retry unreported
        # the first send is refused; the kernel then disconnects the socket
        assert [e.errno for e in recorder.errors] == [errno.ECONNREFUSED] + [errno.ENOTCONN] * 2
        lt.call(client.close)


def test_unconnected_udp_is_silent_about_port_unreachable() -> None:
    with LoopThread() as lt:
        echo = lt.call(udp_server, lt.loop, "udp://127.0.0.1:0", Echo())
        recorder = Recorder()
        client = lt.call(lambda: UdpEndpoint(lt.loop, recorder, local="udp://127.0.0.1:0").start())
        client.send(b"anyone?", ("127.0.0.1", _closed_udp_port()))
        client.send(b"marker", ("127.0.0.1", echo.port))  # its echo comes after any ICMP
        assert lt.wait_until(lambda: recorder.datagrams, TIMEOUT)
        assert recorder.errors == []
        lt.call(client.close)
        lt.call(echo.close)


def test_connected_send_needs_no_address_and_refuses_another() -> None:
    with LoopThread() as lt:
        server = lt.call(udp_server, lt.loop, "udp://127.0.0.1:0", Echo())
        recorder = Recorder()
        client = lt.call(udp_client, lt.loop, f"udp://127.0.0.1:{server.port}", recorder)
        client.send(b"one")
        client.send(b"two", ("127.0.0.1", server.port))  # the peer itself is accepted
        assert lt.wait_until(lambda: len(recorder.datagrams) == 2, TIMEOUT)
        assert {d for d, _ in recorder.datagrams} == {b"one", b"two"}
        with pytest.raises(ValueError, match="is connected to"):
            client.send(b"x", ("127.0.0.1", 9))
        unconnected = lt.call(
            lambda: UdpEndpoint(lt.loop, recorder, local="udp://127.0.0.1:0").start()
        )
        with pytest.raises(ValueError, match="not connected: send\\(data, addr\\) needs an"):
            unconnected.send(b"x")
        for endpoint in (client, server, unconnected):
            lt.call(endpoint.close)


def test_connect_later_turns_an_endpoint_into_a_connected_one() -> None:
    with LoopThread() as lt:
        recorder = Recorder()
        endpoint = lt.call(
            lambda: UdpEndpoint(lt.loop, recorder, local="udp://127.0.0.1:0").start()
        )
        port = _closed_udp_port()
        lt.call(endpoint.connect, f"udp://127.0.0.1:{port}")
        assert lt.call(lambda: endpoint.peer) == ("127.0.0.1", port)
        endpoint.send(b"x")
        assert lt.wait_until(lambda: recorder.errors, TIMEOUT)
        with pytest.raises(ValueError, match="not a udp address"):
            lt.call(endpoint.connect, "unix-dgram://@nope")
        lt.call(endpoint.close)


@pytest.mark.parametrize("connected", [True, False], ids=["connected", "unconnected"])
def test_send_queue_high_water_mark(tmp_path: Path, connected: bool) -> None:
    """A receiver that stops reading: sends queue up to the high water mark, reading pauses,
    and everything arrives in order once it reads again.

    Unix datagrams show it (a loopback UDP send never blocks: the packet leaves at once).
    Unconnected, poll cannot wait for the receiver's queue, so the endpoint retries on a
    timer instead of spinning on a writable socket.
    """
    path = f"{tmp_path}/slow.sock"
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(path)
    receiver.settimeout(TIMEOUT)
    recorder = Recorder()
    with receiver, LoopThread() as lt:
        kwargs: dict[str, Any] = {"high_water_mark": 16 * 1024, "low_water_mark": 4 * 1024}
        if connected:
            kwargs["remote"] = f"unix-dgram://{path}"
        else:
            kwargs["local"] = f"unix-dgram://{tmp_path}/sender.sock"
        endpoint = lt.call(lambda: UdpEndpoint(lt.loop, recorder, **kwargs).start())
        target = None if connected else path

        def fill() -> int:
            sent = 0
            while "high" not in recorder.events and sent < 10_000:
                endpoint.send(sent.to_bytes(4, "big") * 256, target)
                sent += 1
            return sent

        sent = lt.call(fill)
        assert "high" in recorder.events, "the receiver's queue never filled"
        assert lt.call(lambda: endpoint.output_size) >= 16 * 1024
        assert not lt.call(lambda: endpoint.reading)
        received = [receiver.recv(2048)[:4] for _ in range(sent)]
        assert received == [i.to_bytes(4, "big") for i in range(sent)]
        assert lt.wait_until(lambda: "drained" in recorder.events, TIMEOUT)
        assert lt.call(lambda: endpoint.reading and endpoint.output_size == 0)
        assert recorder.errors == []
        lt.call(endpoint.close)


def test_close_sends_what_is_queued_force_close_drops_it(tmp_path: Path) -> None:
    path = f"{tmp_path}/r.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as receiver, LoopThread() as lt:
        receiver.bind(path)
        receiver.settimeout(TIMEOUT)
        for graceful in (True, False):
            recorder = Recorder()
            endpoint = lt.call(lambda r=recorder: udp_client(lt.loop, f"unix-dgram://{path}", r))

            def fill_and_close(ep: UdpEndpoint = endpoint, graceful: bool = graceful) -> int:
                n = 0
                while ep.output_size == 0 and n < 10_000:
                    ep.send(b"q" * 1024)
                    n += 1
                (ep.close if graceful else ep.force_close)()
                return n

            sent = lt.call(fill_and_close)
            queued = sent - (sent - 1)  # the last send is the first one queued
            received = 0
            receiver.settimeout(0.5 if not graceful else TIMEOUT)
            try:
                while received < sent:
                    receiver.recv(2048)
                    received += 1
            except TimeoutError:
                pass
            assert lt.wait_until(lambda r=recorder: "closed" in r.events, TIMEOUT)
            assert recorder.events.count("closed") == 1
            assert received == (sent if graceful else sent - queued)


def test_a_failing_handler_drops_one_datagram_not_the_endpoint() -> None:
    class Fragile(Recorder):
        def on_datagram(self, endpoint: UdpEndpoint, data: bytes, addr: Any) -> None:
            if data == b"boom":
                raise RuntimeError("handler bug")
            super().on_datagram(endpoint, data, addr)

    with LoopThread() as lt:
        handler = Fragile()
        server = lt.call(udp_server, lt.loop, "udp://127.0.0.1:0", handler)
        with _blocking_client(socket.AF_INET, ("127.0.0.1", server.port)) as client:
            client.send(b"boom")
            client.send(b"fine")
            assert lt.wait_until(lambda: handler.datagrams, TIMEOUT)
        assert [d for d, _ in handler.datagrams] == [b"fine"]
        lt.call(server.close)


def test_send_from_another_thread() -> None:
    with LoopThread() as lt:
        server = lt.call(udp_server, lt.loop, "udp://127.0.0.1:0", Echo())
        recorder = Recorder()
        client = lt.call(udp_client, lt.loop, ("127.0.0.1", server.port), recorder)
        data = bytearray(b"from the test thread")
        client.send(data)
        data[:] = b"X" * len(data)  # the endpoint copied it
        assert lt.wait_until(lambda: recorder.datagrams, TIMEOUT)
        assert recorder.datagrams[0][0] == b"from the test thread"
        lt.call(client.close)
        lt.call(server.close)


def test_port_in_use_is_an_error_naming_the_address_and_leaks_nothing() -> None:
    """No SO_REUSEADDR by default for UDP: a second server must not silently share the port."""
    with LoopThread() as lt:
        first = lt.call(udp_server, lt.loop, "udp://127.0.0.1:0", Echo())
        before = fd_count()
        address = f"udp://127.0.0.1:{first.port}"
        with pytest.raises(OSError, match=f"{address}: Address already in use"):
            lt.call(udp_server, lt.loop, address, Echo())
        with pytest.raises(ConnectionRefusedError, match="connect to unix-dgram://@"):
            lt.call(udp_client, lt.loop, f"unix-dgram://@nobody-{uuid.uuid4().hex}", Echo())
        assert fd_count() == before
        lt.call(first.close)


def test_bad_addresses_and_options_are_refused_before_opening() -> None:
    with LoopThread() as lt:
        before = fd_count()
        with pytest.raises(AddressError, match="a tcp address, but this API takes udp://"):
            UdpEndpoint(lt.loop, Echo(), local="tcp://127.0.0.1:0")
        with pytest.raises(ValueError, match="needs a local address, a remote one"):
            UdpEndpoint(lt.loop, Echo())
        with pytest.raises(ValueError, match="TCP_NODELAY does not apply to udp"):
            UdpEndpoint(
                lt.loop,
                Echo(),
                local="udp://127.0.0.1:0",
                sockopts=[parse_sockopt("TCP_NODELAY=1")],
            )
        with pytest.raises(ValueError, match="differ in family"):
            UdpEndpoint(lt.loop, Echo(), local="udp://127.0.0.1:0", remote="unix-dgram:///x")
        assert fd_count() == before


def test_sockopts_are_applied_to_the_endpoint() -> None:
    with LoopThread() as lt:
        opts = [parse_sockopt("SO_RCVBUF=64K"), parse_sockopt("SO_REUSEADDR=1")]
        server = lt.call(lambda: udp_server(lt.loop, "udp://127.0.0.1:0", Echo(), sockopts=opts))
        sock = lt.call(lambda: server.sock)
        assert [opt.read(sock) for opt in opts] == [128 * 1024, True]
        lt.call(server.close)


def test_close_gives_up_on_a_peer_that_never_reads(tmp_path: Path) -> None:
    """A Unix datagram peer that is alive but never reads would keep a graceful close
    waiting for ever (the queue never drains): after ``close_timeout`` the queued
    datagrams are dropped and the endpoint closes."""
    path = f"{tmp_path}/deaf.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as receiver, LoopThread() as lt:
        receiver.bind(path)
        recorder = Recorder()
        endpoint = lt.call(lambda: udp_client(lt.loop, f"unix-dgram://{path}", recorder))

        def fill_and_close() -> None:
            endpoint.close_timeout = 0.3
            while endpoint.output_size == 0:
                endpoint.send(b"q" * 1024)
            endpoint.close()

        lt.call(fill_and_close)
        assert lt.call(lambda: not endpoint.closed), "still draining at first"
        assert lt.wait_until(lambda: "closed" in recorder.events, TIMEOUT)
        assert recorder.events.count("closed") == 1
        assert lt.call(lambda: endpoint.output_size) == 0


def test_on_error_may_close_the_endpoint_while_its_queue_drains(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The docs invite closing in on_error: doing so while queued datagrams are being
    sent (the receiver vanished) must not break the drain loop (IndexError)."""
    path = f"{tmp_path}/gone.sock"

    class CloseOnError(Recorder):
        def on_error(self, endpoint: UdpEndpoint, exc: OSError) -> None:
            super().on_error(endpoint, exc)
            endpoint.force_close()

    with LoopThread() as lt:
        receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        receiver.bind(path)
        recorder = CloseOnError()
        endpoint = lt.call(lambda: udp_client(lt.loop, f"unix-dgram://{path}", recorder))

        def fill() -> None:
            while endpoint.output_size == 0:
                endpoint.send(b"q" * 1024)

        lt.call(fill)
        receiver.close()  # the queued sends now fail
        assert lt.wait_until(lambda: "closed" in recorder.events, TIMEOUT)
        assert recorder.events.count("closed") == 1 and recorder.errors
    escaped = [r for r in caplog.records if r.name == "ioreactor.loop" and r.levelno >= 40]
    assert not escaped, escaped[0].getMessage()
