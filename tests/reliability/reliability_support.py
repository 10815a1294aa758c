"""Helpers for the fault tests: servers in subprocesses, raw HTTP exchanges, /proc readings.

Anything that forks, lowers a limit or gets signalled runs in its own process, never in
pytest's. A server's log goes to a file that the test polls, so a full pipe can never
block the server. Every wait is bounded by :data:`TIMEOUT` (generous: the machine is
shared) and every process a test starts is killed in its cleanup.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import httptools

from ioreactor_tools.bench.procstat import sample_tree

#: Liveness bound for anything a test waits for.
TIMEOUT = 30.0
#: A request every HTTP test can send: small, answered ``Hello, World!``.
GET = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n"


def wait_until(predicate: Callable[[], bool], timeout: float = TIMEOUT, step: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


class ServerProcess:
    """``ioreactor ARGS...`` (or ``python SCRIPT ARGS...``) with its log in ``tmp_path``.

    ``preexec`` runs in the child before exec (e.g. to lower RLIMIT_NOFILE). The child
    leads its own process group, so :meth:`stop` also reaches forked workers.
    """

    def __init__(
        self,
        tmp_path: Path,
        *args: str,
        name: str = "server",
        script: Path | None = None,
        preexec: Callable[[], None] | None = None,
    ) -> None:
        self.log_path = tmp_path / f"{name}.log"
        self._log = self.log_path.open("wb")
        head = [sys.executable, str(script)] if script else [sys.executable, "-m", "ioreactor"]
        self.proc = subprocess.Popen(
            [*head, *args],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=preexec,
        )
        self.port = 0

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for(
        self, pattern: str, count: int = 1, timeout: float = TIMEOUT
    ) -> list[re.Match[str]]:
        """Wait until ``pattern`` matches ``count`` times in the log; the matches."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            matches = list(regex.finditer(self.log()))
            if len(matches) >= count:
                return matches
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(
                    f"{pattern!r} x{count} not in the log (exit {self.proc.poll()}):\n{self.log()}"
                )
            time.sleep(0.02)

    def start(self, workers: int = 0) -> ServerProcess:
        """Wait until it listens (and, with workers, until every worker is ready)."""
        match = self.wait_for(r"listening on tcp://127\.0\.0\.1:(\d+)")[0]
        self.port = int(match.group(1))
        if workers:
            self.wait_for(r"worker \d+ \(pid \d+\) ready", workers)
        return self

    def worker_pids(self) -> dict[int, int]:
        """index -> pid of the newest ready process of each worker position."""
        pids: dict[int, int] = {}
        pattern = r"worker (\d+) (?:\(pid (\d+)\)|restarted: pid (\d+)) ready"
        for m in re.finditer(pattern, self.log()):
            pids[int(m.group(1))] = int(m.group(2) or m.group(3))
        return pids

    def rss(self) -> int:
        """Resident set of the server's process tree, bytes."""
        return sample_tree(self.pid, count_fds=False).rss_bytes

    def fds(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def cpu_seconds(self) -> float:
        return sample_tree(self.pid, count_fds=False).cpu_seconds

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float = TIMEOUT) -> int:
        return self.proc.wait(timeout)

    def stop(self) -> None:
        """Whatever happened: SIGTERM, then SIGKILL to the whole group."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)  # a test may have stopped it
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                pass
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(TIMEOUT)
        self._log.close()

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve(tmp_path: Path, *flags: str, name: str = "serve", **kwargs: object) -> ServerProcess:
    """``ioreactor serve --listen 127.0.0.1:0 FLAGS`` (add ``--workers``), not yet started."""
    return ServerProcess(
        tmp_path,
        "serve",
        "--listen",
        "127.0.0.1:0",
        *flags,
        name=name,
        **kwargs,  # type: ignore[arg-type]
    )


# -- HTTP on raw sockets ------------------------------------------------------------------


class Responses:
    """Parses a response stream with httptools: statuses, heads and bodies in order."""

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.statuses: list[int] = []
        self.headers: list[list[tuple[bytes, bytes]]] = []
        self.bodies: list[bytes] = []
        self._head: list[tuple[bytes, bytes]] = []
        self._body: list[bytes] = []

    def feed(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_message_begin(self) -> None:
        self._head = []
        self._body = []

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head.append((name.lower(), value))

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        self.statuses.append(self.parser.get_status_code())
        self.headers.append(self._head)
        self.bodies.append(b"".join(self._body))

    def says_close(self, i: int) -> bool:
        return (b"connection", b"close") in [(n, v.lower()) for n, v in self.headers[i]]

    def __len__(self) -> int:
        return len(self.statuses)


def read_until_closed(sock: socket.socket, timeout: float = TIMEOUT) -> tuple[bytes, bool]:
    """Everything the peer sends until it closes (EOF or reset); (data, closed in time)."""
    received = bytearray()
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return bytes(received), False
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            return bytes(received), False
        except ConnectionResetError:
            return bytes(received), True
        if not chunk:
            return bytes(received), True
        received += chunk


def http_get(port: int, request: bytes = GET, timeout: float = TIMEOUT) -> int:
    """One request on a new connection; the first response's status."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request)
        parsed = Responses()
        while not parsed.statuses:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed before a response")
            parsed.feed(chunk)
        return parsed.statuses[0]


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
