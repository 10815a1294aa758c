"""The kernel views the labs read: /proc/net/tcp entries and TCP_INFO."""

from __future__ import annotations

import os
import socket

from ioreactor.lab.loopback import ports, tcp_pair
from ioreactor.lab.tcp_info import tcp_info
from ioreactor.lab.tcp_states import state_of, tcp_entries


def test_listener_appears_with_its_inode() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        inode = os.fstat(listener.fileno()).st_ino
        assert any(
            e.local_port == port and e.state == "LISTEN" and e.inode == inode for e in tcp_entries()
        )


def test_ipv6_sockets_are_listed_too() -> None:
    with socket.socket(socket.AF_INET6) as listener:
        listener.bind(("::1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        assert any(e.local_port == port and e.state == "LISTEN" for e in tcp_entries())


def test_connection_states_and_tcp_info() -> None:
    client, server = tcp_pair()
    with client, server:
        assert state_of(*ports(client)) == "ESTABLISHED"
        info = tcp_info(client)
        assert info.state == "ESTABLISHED" and info.probes == 0
        client.shutdown(socket.SHUT_WR)
        assert server.recv(1) == b""
        assert tcp_info(server).state == "CLOSE_WAIT"
