"""Helpers for the fault tests: ``ioreactor serve`` in a subprocess, /proc readings.

Every wait is bounded by :data:`TIMEOUT` (generous: the machine is shared) and every
process a test starts is killed in its cleanup (``support.server_process``).
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
from collections.abc import Sequence
from pathlib import Path

from support.server_process import ServerProcess

#: Liveness bound for anything a test waits for.
TIMEOUT = 30.0


def serve(tmp_path: Path, *flags: str, name: str = "serve", **kwargs: object) -> ServerProcess:
    """``ioreactor serve --listen 127.0.0.1:0 FLAGS`` (add ``--workers``), not yet run
    (``with`` runs it and waits until it serves)."""
    return ServerProcess(
        tmp_path,
        "serve",
        "--listen",
        "127.0.0.1:0",
        *flags,
        name=name,
        **kwargs,  # type: ignore[arg-type]
    )


# -- the kernel's view of sockets -----------------------------------------------------------


def socket_inode(local_port: int, remote_port: int) -> int | None:
    """Inode of the loopback TCP socket bound to ``local_port`` and connected to
    ``remote_port`` (from /proc/net/tcp and tcp6), or None."""
    want_local = f":{local_port:04X}"
    want_remote = f":{remote_port:04X}"
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                lines = f.readlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[1].endswith(want_local) and fields[2].endswith(want_remote):
                return int(fields[9])
    return None


def process_holding(inode: int, pids: Sequence[int]) -> int | None:
    """Which of ``pids`` has the socket ``inode`` among its fds."""
    target = f"socket:[{inode}]"
    for pid in pids:
        try:
            names = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for name in names:
            with contextlib.suppress(OSError):
                if os.readlink(f"/proc/{pid}/fd/{name}") == target:
                    return pid
    return None


def serving_pid(client: socket.socket, pids: Sequence[int]) -> int | None:
    """The server process (of ``pids``) that holds the other end of ``client``."""
    local = client.getsockname()[1]
    server_port = client.getpeername()[1]
    inode = socket_inode(server_port, local)
    return None if inode is None else process_holding(inode, pids)


def listen_overflows() -> int:
    """TcpExtListenOverflows of this network namespace (SYNs dropped on a full backlog)."""
    with open("/proc/net/netstat") as f:
        lines = f.read().splitlines()
    for names, values in zip(lines[::2], lines[1::2], strict=False):
        if names.startswith("TcpExt:"):
            table = dict(zip(names.split()[1:], values.split()[1:], strict=True))
            return int(table["ListenOverflows"])
    raise RuntimeError("no TcpExt counters in /proc/net/netstat")


def rst_close(sock: socket.socket) -> None:
    """Close with SO_LINGER 0: the kernel sends RST instead of FIN."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()
