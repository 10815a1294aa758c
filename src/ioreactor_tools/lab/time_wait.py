"""Lab ``time-wait``: who holds TIME_WAIT, and why a restarted server needs SO_REUSEADDR.

Course: 提高篇_上 "TIME_WAIT" and 提高篇_下 "地址已经被使用". The side that closes first
(the active closer) keeps the connection in TIME_WAIT for 2MSL (60 s on Linux, fixed in
the kernel) so a late FIN can still be acknowledged and old segments die out. A server
that closes first holds TIME_WAIT on its well-known port, and binding that port again
fails with EADDRINUSE unless SO_REUSEADDR is set.
"""

from __future__ import annotations

import errno
import socket
import struct
import time
from dataclasses import dataclass

from ioreactor_tools.lab.loopback import LOOPBACK, ports, tcp_pair, wait_for
from ioreactor_tools.lab.report import Finding, LabReport
from ioreactor_tools.lab.tcp_states import count_state, tcp_entries

TIME_WAIT_LINUX_S = 60  # TCP_TIMEWAIT_LEN in include/net/tcp.h; not a sysctl
SETTLE_S = 3.0  # generous: one read of a busy machine's table can take 0.2 s


@dataclass(frozen=True, slots=True)
class Closers:
    """TIME_WAIT counts on each side of one connection, for each side closing first."""

    client_closes_client_tw: int
    client_closes_server_tw: int
    server_closes_client_tw: int
    server_closes_server_tw: int
    linger_zero_closer_tw: int


@dataclass(frozen=True, slots=True)
class Rebind:
    """Binding a listener's port again while its old connection is in TIME_WAIT."""

    old_reuseaddr: bool
    new_reuseaddr: bool
    time_wait_on_port: int
    error: str | None  # errno name, None when bind and listen succeeded


@dataclass(frozen=True, slots=True)
class TimeWaitResult:
    closers: Closers
    rebinds: tuple[Rebind, ...]
    many_client_tw: int
    many_connections: int
    lifetime_s: float | None  # measured only when asked: it takes a minute


def _close_in_order(first: socket.socket, second: socket.socket) -> None:
    """``first`` closes; ``second`` reads the EOF and closes too (the four-way close)."""
    first.close()
    second.settimeout(5)
    second.recv(1)
    second.close()


def _settled_time_wait(conns: set[tuple[int, int]]) -> dict[tuple[int, int], int]:
    """TIME_WAIT count per (local, remote) port pair, once the closing handshakes end.

    The last ACK of a close is processed asynchronously, so wait (up to SETTLE_S) until
    each side is in TIME_WAIT or gone. Each read of /proc/net/tcp walks the kernel's
    whole connection table (milliseconds), so one read serves all the pairs.
    """
    counts: dict[tuple[int, int], int] = {}

    def settled() -> bool:
        counts.clear()
        for e in tcp_entries({port for pair in conns for port in pair}):
            pair = (e.local_port, e.remote_port)
            if pair in conns:
                if e.state != "TIME_WAIT":
                    return False
                counts[pair] = counts.get(pair, 0) + 1
        return True

    wait_for(settled, SETTLE_S, step=0.01)
    return counts


def _close_and_count(client_first: bool) -> tuple[int, int]:
    """TIME_WAIT sockets on (client side, server side) after one side closed first."""
    client, server = tcp_pair()
    c_port, s_port = ports(client)
    _close_in_order(*((client, server) if client_first else (server, client)))
    counts = _settled_time_wait({(c_port, s_port), (s_port, c_port)})
    return counts.get((c_port, s_port), 0), counts.get((s_port, c_port), 0)


def who_holds_time_wait() -> Closers:
    """Close one connection each way, and once with SO_LINGER {1, 0}."""
    client_first = _close_and_count(client_first=True)
    server_first = _close_and_count(client_first=False)
    client, server = tcp_pair()
    c_port, s_port = ports(client)
    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    client.close()
    server.close()
    linger_zero = _settled_time_wait({(c_port, s_port), (s_port, c_port)})
    return Closers(
        client_closes_client_tw=client_first[0],
        client_closes_server_tw=client_first[1],
        server_closes_client_tw=server_first[0],
        server_closes_server_tw=server_first[1],
        linger_zero_closer_tw=linger_zero.get((c_port, s_port), 0),
    )


def rebind(old_reuseaddr: bool, new_reuseaddr: bool) -> Rebind:
    """A server closes its connection first, exits, and restarts on the same port."""
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, int(old_reuseaddr))
    listener.bind((LOOPBACK, 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    client = socket.create_connection((LOOPBACK, port))
    conn, _ = listener.accept()
    server_side = ports(conn)
    _close_in_order(conn, client)
    listener.close()
    tw = _settled_time_wait({server_side, server_side[::-1]}).get(server_side, 0)
    with socket.socket() as restarted:
        restarted.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, int(new_reuseaddr))
        try:
            restarted.bind((LOOPBACK, port))
            restarted.listen(1)
        except OSError as exc:
            return Rebind(old_reuseaddr, new_reuseaddr, tw, errno.errorcode.get(exc.errno or 0))
    return Rebind(old_reuseaddr, new_reuseaddr, tw, None)


def accumulate(connections: int) -> int:
    """Short connections closed by the client: TIME_WAIT piles up on its ephemeral ports."""
    client_sides = set()
    for _ in range(connections):
        client, server = tcp_pair()
        client_sides.add(ports(client))
        _close_in_order(client, server)
    counts = _settled_time_wait(client_sides | {(s, c) for c, s in client_sides})
    return sum(counts.get(side, 0) for side in client_sides)


def measure_lifetime(timeout: float = TIME_WAIT_LINUX_S + 10) -> float | None:
    """Seconds one TIME_WAIT lasts (about 60 on Linux); None if it outlived ``timeout``."""
    client, server = tcp_pair()
    c_port, s_port = ports(client)
    _close_in_order(client, server)
    start = time.monotonic()
    if not wait_for(lambda: count_state("TIME_WAIT", c_port, s_port) == 0, timeout, 0.25):
        return None
    return time.monotonic() - start


def run(connections: int = 20, lifetime: bool = False) -> TimeWaitResult:
    return TimeWaitResult(
        closers=who_holds_time_wait(),
        rebinds=tuple(rebind(old, new) for old in (False, True) for new in (False, True)),
        many_client_tw=accumulate(connections),
        many_connections=connections,
        lifetime_s=measure_lifetime() if lifetime else None,
    )


def report(result: TimeWaitResult) -> LabReport:
    c = result.closers
    rep = LabReport("TIME_WAIT and SO_REUSEADDR", "提高篇_上 TIME_WAIT; 提高篇_下 地址已经被使用")
    rep.findings.append(
        Finding(
            "client closes first",
            f"TIME_WAIT: client side {c.client_closes_client_tw}, server side "
            f"{c.client_closes_server_tw}",
            "only the active closer (主动关闭方) enters TIME_WAIT",
            c.client_closes_client_tw == 1 and c.client_closes_server_tw == 0,
        )
    )
    rep.findings.append(
        Finding(
            "server closes first",
            f"TIME_WAIT: client side {c.server_closes_client_tw}, server side "
            f"{c.server_closes_server_tw} (on the server's listening port)",
            "a server that closes first holds TIME_WAIT on its well-known port",
            c.server_closes_server_tw == 1 and c.server_closes_client_tw == 0,
        )
    )
    rep.findings.append(
        Finding(
            "client closes with SO_LINGER {1, 0}",
            f"TIME_WAIT on the closer: {c.linger_zero_closer_tw} (an RST was sent instead)",
            "l_onoff=1, l_linger=0 skips TIME_WAIT and resets the connection (not recommended)",
            c.linger_zero_closer_tw == 0,
        )
    )
    rep.findings.append(
        Finding(
            f"{result.many_connections} short connections closed by the client",
            f"{result.many_client_tw} TIME_WAIT sockets, one per ephemeral port",
            "too many TIME_WAIT on a busy client can exhaust local ports (tcp_tw_reuse helps)",
            result.many_client_tw == result.many_connections,
        )
    )
    for r in result.rebinds:
        both = r.old_reuseaddr and r.new_reuseaddr
        rep.findings.append(
            Finding(
                f"restart a listener: SO_REUSEADDR old={_on(r.old_reuseaddr)}, "
                f"new={_on(r.new_reuseaddr)}",
                f"{r.time_wait_on_port} TIME_WAIT on the port; bind: {r.error or 'OK'}",
                "Address already in use without SO_REUSEADDR; set it before bind to reuse the port"
                if not both
                else "with SO_REUSEADDR the server restarts at once",
                r.time_wait_on_port > 0 and (r.error is None) == both,
            )
        )
    if result.lifetime_s is not None:
        rep.findings.append(
            Finding(
                "how long TIME_WAIT lasts",
                f"{result.lifetime_s:.1f} s",
                "2MSL; Linux fixes MSL at 30 s, so 60 s",
                abs(result.lifetime_s - TIME_WAIT_LINUX_S) < 5,
            )
        )
    else:
        rep.notes.append("TIME_WAIT's 60 s lifetime was not measured; run with --lifetime.")
    rep.notes.append(
        "Linux checks SO_REUSEADDR on both sockets: the TIME_WAIT connection inherits the "
        "flag from the listener that accepted it, so a server must set it on every start."
    )
    return rep


def _on(flag: bool) -> str:
    return "on" if flag else "off"
