"""TCP socket states as the kernel lists them in /proc/net/tcp and /proc/net/tcp6.

This is what ``netstat``/``ss`` read (the course's tool for counting TIME_WAIT): one line
per socket of this network namespace, ports in hex, state as a hex code. TIME_WAIT
sockets have no owning process, so the table is the only place to see them.
"""

from __future__ import annotations

from collections.abc import Collection
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


def tcp_entries(ports: Collection[int] | None = None) -> list[TcpEntry]:
    """IPv4 and IPv6 TCP sockets of this network namespace; with ``ports``, only those
    whose local or remote port is one of them.

    The kernel formats every socket of the namespace on each read (tens of thousands
    after a load test, at a few microseconds each), so the lines are filtered by the
    ports' hex text before any parsing. The file is no snapshot: it is produced a page
    at a time, and when sockets come and go meanwhile one can be listed twice, so lines
    are deduplicated by their 4-tuple (unique among a namespace's sockets).
    """
    needles = None if ports is None else tuple(f":{p:04X} " for p in ports)
    entries = []
    seen: set[tuple[str, str]] = set()
    for path in TABLES:
        try:
            with open(path) as f:
                lines = f.read().splitlines()[1:]
        except FileNotFoundError:
            continue  # no IPv6 in this kernel
        for line in lines:
            if needles is not None and not any(n in line for n in needles):
                continue
            fields = line.split()
            four_tuple = (fields[1], fields[2])
            if four_tuple in seen:
                continue
            seen.add(four_tuple)
            entry = TcpEntry(
                local_port=int(fields[1].rsplit(":", 1)[1], 16),
                remote_port=int(fields[2].rsplit(":", 1)[1], 16),
                state=STATES.get(int(fields[3], 16), fields[3]),
                inode=int(fields[9]),
            )
            if ports is None or entry.local_port in ports or entry.remote_port in ports:
                entries.append(entry)
    return entries


def count_state(state: str, local_port: int, remote_port: int | None = None) -> int:
    """How many sockets on ``local_port`` (and ``remote_port``, if given) are in ``state``."""
    return sum(
        1
        for e in tcp_entries({local_port})
        if e.state == state
        and e.local_port == local_port
        and (remote_port is None or e.remote_port == remote_port)
    )


def state_of(local_port: int, remote_port: int) -> str | None:
    """The state of the one connection with these ports, or None if it is gone."""
    for e in tcp_entries({local_port, remote_port}):
        if e.local_port == local_port and e.remote_port == remote_port:
            return e.state
    return None
