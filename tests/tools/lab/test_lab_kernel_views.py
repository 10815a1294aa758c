"""The kernel views the labs read: /proc/net/tcp entries and TCP_INFO."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from ioreactor_tools.lab import tcp_states
from ioreactor_tools.lab.loopback import ports, tcp_pair
from ioreactor_tools.lab.tcp_info import tcp_info
from ioreactor_tools.lab.tcp_states import state_of, tcp_entries


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


def test_port_filter_and_duplicate_lines(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A socket listed twice (the table changed during the read) counts once."""
    header = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt  uid\n"
    rest = " 00000000:00000000 03:0000175E 00000000     0        0"
    tw = f"   0: 0100007F:D50A 0100007F:D24B 06{rest} 0 3 0\n"
    other = f"   1: 0100007F:1F90 0100007F:C000 01{rest} 77 1 0\n"
    table = tmp_path / "tcp"
    table.write_text(header + tw + other + tw)
    monkeypatch.setattr(tcp_states, "TABLES", (str(table), str(tmp_path / "absent")))
    assert tcp_states.count_state("TIME_WAIT", 0xD50A, 0xD24B) == 1
    assert [e.inode for e in tcp_states.tcp_entries({0x1F90})] == [77]
    assert len(tcp_states.tcp_entries()) == 2
