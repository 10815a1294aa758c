"""A few fields of Linux's ``TCP_INFO`` socket option (struct tcp_info).

It is how a process sees what its own kernel does on a connection without a packet
capture: the state, the keepalive probes sent and not answered, and how long ago the
last ACK arrived (a keepalive probe's answer is such an ACK).
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass

from ioreactor_tools.lab.tcp_states import STATES

_SIZE = 104  # enough for the fields below in every kernel since 2.6
_LAST_ACK_RECV_OFFSET = 56  # after 8 one-byte fields and 12 u32 fields


@dataclass(frozen=True, slots=True)
class TcpInfo:
    """The connection's state, unanswered probes, and ms since the last ACK arrived."""

    state: str
    probes: int
    last_ack_recv_ms: int


def tcp_info(sock: socket.socket) -> TcpInfo:
    raw = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _SIZE)
    (last_ack_recv,) = struct.unpack_from("I", raw, _LAST_ACK_RECV_OFFSET)
    return TcpInfo(
        state=STATES.get(raw[0], str(raw[0])), probes=raw[3], last_ack_recv_ms=last_ack_recv
    )
