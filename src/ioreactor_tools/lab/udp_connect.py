"""Lab ``udp-connect``: an unconnected and a connected UDP socket against a closed port.

Course: 提高篇_下 "UDP 已连接". ``connect`` on UDP sends nothing; it records the peer in
the socket, which lets the kernel hand the peer's ICMP "port unreachable" back to it as
ECONNREFUSED. An unconnected socket cannot be told (the error names no ``sendto``), so
it just waits for an answer that never comes. A connected socket also accepts datagrams
from its peer only.
"""

from __future__ import annotations

import errno
import socket
from dataclasses import dataclass

from ioreactor_tools.lab.loopback import LOOPBACK
from ioreactor_tools.lab.report import Finding, LabReport

WAIT_S = 0.3


def closed_udp_port() -> int:
    """A port nothing listens on: bound once by us, then released."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind((LOOPBACK, 0))
        port: int = probe.getsockname()[1]
    return port


def _outcome(sock: socket.socket) -> str:
    """What a read returns within WAIT_S: 'timeout', an errno name, or 'data'."""
    sock.settimeout(WAIT_S)
    try:
        sock.recv(2048)
    except TimeoutError:
        return "timeout"
    except OSError as exc:
        return errno.errorcode.get(exc.errno or 0, str(exc))
    return "data"


@dataclass(frozen=True, slots=True)
class UdpConnectResult:
    unconnected_send: str  # 'ok' or errno name, for the second sendto
    unconnected_read: str
    connected_read: str
    connected_send_after: str  # a send after the error was reported
    foreign_to_connected: str  # what a connected socket reads when a stranger sends
    peer_to_connected: str


def _send(sock: socket.socket, address: tuple[str, int] | None) -> str:
    try:
        if address is None:
            sock.send(b"ping")
        else:
            sock.sendto(b"ping", address)
    except OSError as exc:
        return errno.errorcode.get(exc.errno or 0, str(exc))
    return "ok"


def run() -> UdpConnectResult:
    target = (LOOPBACK, closed_udp_port())
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as unconnected:
        _send(unconnected, target)
        unconnected_send = _send(unconnected, target)
        unconnected_read = _outcome(unconnected)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as connected:
        connected.connect(target)
        _send(connected, None)
        connected_read = _outcome(connected)
        _send(connected, None)
        connected_send_after = _send(connected, None)
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as stranger,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client,
    ):
        peer.bind((LOOPBACK, 0))
        client.connect(peer.getsockname())
        stranger.sendto(b"hello", client.getsockname())
        foreign = _outcome(client)
        peer.sendto(b"hello", client.getsockname())
        from_peer = _outcome(client)
    return UdpConnectResult(
        unconnected_send, unconnected_read, connected_read, connected_send_after, foreign, from_peer
    )


def report(r: UdpConnectResult) -> LabReport:
    rep = LabReport("connected vs unconnected UDP", "提高篇_下 UDP 已连接")
    rep.findings.append(
        Finding(
            "unconnected: sendto a closed port twice, then recvfrom",
            f"sendto: {r.unconnected_send}; recvfrom: {r.unconnected_read} after {WAIT_S} s",
            "no error ever reaches an unconnected socket: it blocks until a timeout",
            r.unconnected_send == "ok" and r.unconnected_read == "timeout",
        )
    )
    rep.findings.append(
        Finding(
            "connected: send to the closed port, then recv",
            f"recv: {r.connected_read}",
            "connect lets the kernel deliver the ICMP port-unreachable as ECONNREFUSED (异步错误)",
            r.connected_read == "ECONNREFUSED",
        )
    )
    rep.findings.append(
        Finding(
            "connected: send, send again",
            f"second send: {r.connected_send_after}",
            "the pending error is reported on the next call, which may be a send",
            r.connected_send_after == "ECONNREFUSED",
        )
    )
    rep.findings.append(
        Finding(
            "connected socket: a datagram from another address, then one from the peer",
            f"from a stranger: {r.foreign_to_connected}; from the peer: {r.peer_to_connected}",
            "a connected UDP socket only receives from the address it connected to",
            r.foreign_to_connected == "timeout" and r.peer_to_connected == "data",
        )
    )
    return rep
