"""Endpoints: one echo service on any mix of TCP/UDP/Unix addresses, all-or-nothing start,
options routed to the listeners they fit, dual-stack, peer credentials."""

from __future__ import annotations

import errno
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from net_support import HAS_IPV6, fd_count, needs_ipv6

from ioreactor.echo import DatagramEchoHandler, EchoHandler, start_echo
from ioreactor.net.address import AddressError, parse_address
from ioreactor.net.endpoints import Endpoints, StreamServer
from ioreactor.net.sockopt import KeepAlive, SockOptError, parse_sockopt
from ioreactor.testing import LoopThread, recv_exactly

TIMEOUT = 10.0


def _client(bound: str) -> socket.socket:
    address = parse_address(bound)
    sock = socket.socket(address.family, address.socktype)
    try:
        sock.settimeout(TIMEOUT)
        if address.is_unix and not address.is_stream:
            sock.bind("")  # autobind, so the echo can answer
        sock.connect(address.sockaddr)
    except BaseException:
        sock.close()
        raise
    return sock


def _echo(bound: str, payload: bytes) -> bytes:
    with _client(bound) as sock:
        if sock.type == socket.SOCK_DGRAM:
            sock.send(payload)
            return sock.recv(65536)
        sock.sendall(payload)
        return recv_exactly(sock, len(payload))


def test_echo_over_every_kind_at_once(tmp_path: Path) -> None:
    addresses = [
        "127.0.0.1:0",
        "udp://127.0.0.1:0",
        f"unix://{tmp_path}/s.sock",
        f"unix-dgram://{tmp_path}/d.sock",
        f"unix://@ioreactor-{uuid.uuid4().hex}",
        f"unix-dgram://@ioreactor-{uuid.uuid4().hex}",
    ]
    if HAS_IPV6:
        addresses += ["tcp://[::1]:0", "udp://[::1]:0"]
    with LoopThread() as lt:
        endpoints = lt.call(start_echo, lt.loop, addresses)
        bound = lt.call(endpoints.bound)
        assert [parse_address(b).kind for b in bound] == sorted(
            (parse_address(a).kind for a in addresses), key=lambda k: k not in ("tcp", "unix")
        )
        for name in bound:
            payload = os.urandom(3000)
            assert _echo(name, payload) == payload, name
        lt.call(endpoints.close)
    assert not os.path.exists(f"{tmp_path}/s.sock") and not os.path.exists(f"{tmp_path}/d.sock")


def test_start_is_all_or_nothing(tmp_path: Path) -> None:
    with LoopThread() as lt, socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        before = fd_count()
        with pytest.raises(OSError, match=f"tcp://127.0.0.1:{port}: Address already in use"):
            lt.call(
                start_echo,
                lt.loop,
                ["udp://127.0.0.1:0", f"unix://{tmp_path}/first.sock", f"127.0.0.1:{port}"],
            )
        assert fd_count() == before
        assert not os.path.exists(f"{tmp_path}/first.sock")


def test_errors_are_found_before_anything_binds(tmp_path: Path) -> None:
    with LoopThread() as lt:
        before = fd_count()
        with pytest.raises(AddressError, match="port 99999 is out of range"):
            Endpoints(lt.loop, ["127.0.0.1:0", "udp://127.0.0.1:99999"], handler=EchoHandler())
        with pytest.raises(AddressError, match="given more than once"):
            Endpoints(lt.loop, ["unix:///tmp/a", "unix:///tmp/a"], handler=EchoHandler())
        with pytest.raises(AddressError, match="no address to listen on"):
            Endpoints(lt.loop, [], handler=EchoHandler())
        with pytest.raises(ValueError, match=r"udp://127\.0\.0\.1:0: a datagram address needs a"):
            Endpoints(lt.loop, ["127.0.0.1:0", "udp://127.0.0.1:0"], handler=EchoHandler())
        with pytest.raises(ValueError, match="a stream address needs a stream handler"):
            Endpoints(lt.loop, ["127.0.0.1:0"], datagram_handler=DatagramEchoHandler())
        with pytest.raises(
            SockOptError,
            match="TCP_NODELAY fits none of the listen addresses \\(it applies to tcp; "
            "the addresses are udp, unix\\)",
        ):
            start_echo(
                lt.loop, ["udp://127.0.0.1:0", f"unix://{tmp_path}/x"], sockopts=["TCP_NODELAY=1"]
            )
        with pytest.raises(SockOptError, match=r"IPV6_V6ONLY fits none .* over IPv6"):
            start_echo(lt.loop, ["127.0.0.1:0"], sockopts=["IPV6_V6ONLY=1"])
        with pytest.raises(SockOptError, match="unknown socket option 'NODELAY'"):
            start_echo(lt.loop, ["127.0.0.1:0"], sockopts=["NODELAY=1"])
        with pytest.raises(ValueError, match=r"allowed_uids .* needs a unix:// stream address"):
            start_echo(lt.loop, ["127.0.0.1:0"], allowed_uids={0})
        assert fd_count() == before


def test_options_reach_the_listeners_they_fit(tmp_path: Path) -> None:
    opts = ["TCP_NODELAY=0", "SO_KEEPALIVE=50,8,4", "SO_LINGER=0", "SO_RCVBUF=96K"]
    with LoopThread() as lt:
        endpoints = lt.call(
            lambda: start_echo(
                lt.loop,
                ["127.0.0.1:0", "udp://127.0.0.1:0", f"unix://{tmp_path}/o"],
                sockopts=opts,
            )
        )
        tcp, unix = endpoints.servers
        (udp,) = endpoints.datagram_endpoints
        with socket.create_connection(("127.0.0.1", tcp.port), timeout=TIMEOUT) as client:
            client.sendall(b"x")
            assert client.recv(1) == b"x"
            (conn,) = lt.call(lambda: list(tcp.connections))
            parsed = [parse_sockopt(o) for o in opts]
            assert [o.read(conn.sock) for o in parsed] == [
                False,
                KeepAlive(50, 8, 4),
                0,
                192 * 1024,
            ]
        rcvbuf = parse_sockopt("SO_RCVBUF=1")
        assert rcvbuf.read(lt.call(lambda: udp.sock)) == 192 * 1024
        assert lt.call(lambda: unix.sockopts) == (parse_sockopt("SO_RCVBUF=96K"),)
        lt.call(endpoints.close)


def test_so_linger_zero_server_resets_its_connections() -> None:
    """SO_LINGER=0 on the listener: closing a connection sends RST; the client sees ECONNRESET."""
    with LoopThread() as lt:
        endpoints = lt.call(lambda: start_echo(lt.loop, ["127.0.0.1:0"], sockopts=["SO_LINGER=0"]))
        (server,) = endpoints.servers
        with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as client:
            client.sendall(b"ping")
            assert client.recv(4) == b"ping"
            lt.call(server.close)
            with pytest.raises(ConnectionResetError):
                client.recv(1)


@pytest.mark.skipif(not hasattr(socket, "TCP_QUICKACK"), reason="no TCP_QUICKACK on this OS")
def test_quickack_is_set_on_each_accepted_socket() -> None:
    with LoopThread() as lt:
        server = lt.call(
            lambda: StreamServer(
                lt.loop,
                "127.0.0.1:0",
                EchoHandler(),
                sockopts=[parse_sockopt("TCP_QUICKACK=0")],
            ).start()
        )
        with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as client:
            client.sendall(b"q")
            assert client.recv(1) == b"q"
            (conn,) = lt.call(lambda: list(server.connections))
            # quick-ack is on by default for a new connection: 0 proves the server set it
            assert conn.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK) == 0
        lt.call(server.close)


@pytest.mark.parametrize(("allowed_delta", "accepted"), [(0, True), (1, False)])
def test_peer_credentials_gate_unix_connections(
    tmp_path: Path, allowed_delta: int, accepted: bool
) -> None:
    events: list[str] = []

    class Watch(EchoHandler):
        def on_connection(self, conn: Any) -> None:
            events.append("connected")

    path = f"{tmp_path}/gate.sock"
    with LoopThread() as lt:
        server = lt.call(
            lambda: StreamServer(
                lt.loop, f"unix://{path}", Watch(), allowed_uids={os.getuid() + allowed_delta}
            ).start()
        )
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            client.settimeout(TIMEOUT)
            client.connect(path)
            if accepted:
                client.sendall(b"me?")
                assert client.recv(3) == b"me?"
            else:
                assert client.recv(3) == b""  # closed at once, before any handler ran
        assert lt.call(lambda: server.rejected_peers) == (0 if accepted else 1)
        assert events == (["connected"] if accepted else [])
        lt.call(server.close)


def test_allowed_uids_needs_a_unix_address() -> None:
    with LoopThread() as lt, pytest.raises(ValueError, match="needs a unix:// address"):
        StreamServer(lt.loop, "127.0.0.1:0", EchoHandler(), allowed_uids={0})


@needs_ipv6
@pytest.mark.parametrize("kind", ["tcp", "udp"])
@pytest.mark.parametrize(("v6only", "v4_reaches"), [("0", True), ("1", False)])
def test_dual_stack(kind: str, v6only: str, v4_reaches: bool) -> None:
    """[::]:PORT with IPV6_V6ONLY=0 also serves IPv4 (as ::ffff:127.0.0.1); with 1 it does not."""
    with LoopThread() as lt:
        endpoints = lt.call(
            lambda: start_echo(lt.loop, [f"{kind}://[::]:0"], sockopts=[f"IPV6_V6ONLY={v6only}"])
        )
        port = parse_address(lt.call(endpoints.bound)[0]).port
        assert _echo(f"{kind}://[::1]:{port}", b"six") == b"six"
        if v4_reaches:
            assert _echo(f"{kind}://127.0.0.1:{port}", b"four") == b"four"
        elif kind == "tcp":
            with pytest.raises(ConnectionRefusedError):
                _echo(f"tcp://127.0.0.1:{port}", b"four")
        else:
            with pytest.raises(ConnectionRefusedError):  # ICMP port unreachable, connected UDP
                _echo(f"udp://127.0.0.1:{port}", b"four")
        lt.call(endpoints.close)


@needs_ipv6
def test_both_wildcards_on_one_port_make_the_v6_socket_v6_only() -> None:
    for _ in range(5):  # a free port both families can take; retry if another test grabs it
        with socket.socket() as probe:
            probe.bind(("0.0.0.0", 0))
            port = probe.getsockname()[1]
        with LoopThread() as lt:
            try:
                endpoints = lt.call(start_echo, lt.loop, [f"0.0.0.0:{port}", f"tcp://[::]:{port}"])
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    continue
                raise
            assert [server.v6only for server in endpoints.servers] == [None, True]
            assert _echo(f"tcp://127.0.0.1:{port}", b"4") == b"4"
            assert _echo(f"tcp://[::1]:{port}", b"6") == b"6"
            lt.call(endpoints.close)
            return
    pytest.fail("no port was free for both families in 5 tries")


def test_serve_echo_runs_until_sigterm_and_cleans_up(tmp_path: Path) -> None:
    path = f"{tmp_path}/served.sock"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ioreactor_tools.bench.udp_load",
            "ioreactor",
            "--listen",
            f"unix://{path}",
        ]
    )
    try:
        deadline = time.monotonic() + 30
        while True:  # the path appears at bind(), a connection succeeds after listen()
            assert proc.poll() is None and time.monotonic() < deadline, "server never listened"
            try:
                echoed = _echo(f"unix://{path}", b"served")
                break
            except (FileNotFoundError, ConnectionRefusedError):
                time.sleep(0.02)
        assert echoed == b"served"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        proc.kill()
        proc.wait()
    assert not os.path.exists(path)
