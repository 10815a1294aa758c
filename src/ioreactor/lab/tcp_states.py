"""TCP socket states as the kernel lists them in /proc/net/tcp and /proc/net/tcp6.

This is what ``netstat``/``ss`` read (the course's tool for counting TIME_WAIT): one line
per socket of this network namespace, ports in hex, state as a hex code. TIME_WAIT
sockets have no owning process, so the table is the only place to see them.
"""

from __future__ import annotations

from dataclasses import dataclass

STATES = {
    1: "ESTABLISHED", 2: "SYN_SENT", 3: "SYN_RECV", 4: "FIN_WAIT1", 5: "FIN_WAIT2",
    6: "TIME_WAIT", 7: "CLOSE", 8: "CLOSE_WAIT", 9: "LAST_ACK", 10: "LISTEN", 11: "CLOSING",
}  # fmt: skip
TABLES = ("/proc/net/tcp", "/proc/net/tcp6")


@dataclass(frozen=True, slots=True)
class TcpEntry:
    """One socket: local and remote port, state name, inode (0 for TIME_WAIT)."""

    local_port: int
    remote_port: int
    state: str
    inode: int


def tcp_entries() -> list[TcpEntry]:
    """Every IPv4 and IPv6 TCP socket of this network namespace."""
    entries = []
    for path in TABLES:
        try:
            with open(path) as f:
                lines = f.readlines()[1:]
        except FileNotFoundError:
            continue  # no IPv6 in this kernel
        for line in lines:
            fields = line.split()
            entries.append(
                TcpEntry(
                    local_port=int(fields[1].rsplit(":", 1)[1], 16),
                    remote_port=int(fields[2].rsplit(":", 1)[1], 16),
                    state=STATES.get(int(fields[3], 16), fields[3]),
                    inode=int(fields[9]),
                )
            )
    return entries


def count_state(state: str, local_port: int, remote_port: int | None = None) -> int:
    """How many sockets on ``local_port`` (and ``remote_port``, if given) are in ``state``."""
    return sum(
        1
        for e in tcp_entries()
        if e.state == state
        and e.local_port == local_port
        and (remote_port is None or e.remote_port == remote_port)
    )


def state_of(local_port: int, remote_port: int) -> str | None:
    """The state of the one connection with these ports, or None if it is gone."""
    for e in tcp_entries():
        if e.local_port == local_port and e.remote_port == remote_port:
            return e.state
    return None
