"""systemd's side of a service, for tests: Debian's ``systemd-socket-activate`` and a
notify socket the test reads (NOTIFY_SOCKET), with the sender's pid of each message.
"""

from __future__ import annotations

import socket
import struct
import time
from pathlib import Path

from support.programs import require_program

#: Where Debian puts the tool (package systemd), under its two names.
SOCKET_ACTIVATE_PATHS = ("/usr/bin/systemd-socket-activate", "/lib/systemd/systemd-activate")
_UCRED = struct.Struct("iII")  # pid, uid, gid


def socket_activate() -> str:
    """The path of ``systemd-socket-activate``, or skip naming the package."""
    return require_program(
        "systemd-socket-activate",
        "systemd-socket-activate (Debian package systemd: /usr/bin/systemd-socket-activate)",
        SOCKET_ACTIVATE_PATHS,
    )


class NotifySocket:
    """A Unix datagram socket standing in for systemd's; every message with its sender."""

    def __init__(self, path: Path, timeout: float = 20.0) -> None:
        self.name = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.name)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.sock.settimeout(timeout)
        #: (message, sender pid, CLOCK_MONOTONIC second) of everything received so far.
        self.messages: list[tuple[str, int, float]] = []

    def receive(self) -> tuple[str, int]:
        """The next notification and the pid the kernel vouches sent it."""
        data, ancillary, _, _ = self.sock.recvmsg(4096, socket.CMSG_SPACE(_UCRED.size))
        pids = [
            _UCRED.unpack(payload[: _UCRED.size])[0]
            for level, kind, payload in ancillary
            if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS
        ]
        assert len(pids) == 1, ancillary
        self.messages.append((data.decode(), pids[0], time.monotonic()))
        return data.decode(), pids[0]

    def wait_for(self, assignment: str, timeout: float = 20.0) -> tuple[str, int]:
        """The next message that has the line ``assignment`` (``READY=1``)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                message, pid = self.receive()
            except TimeoutError:
                break
            if assignment in message.split("\n"):
                return message, pid
        raise AssertionError(f"no {assignment} within {timeout} s; got {self.messages}")

    def drain(self, seconds: float) -> list[str]:
        """Every message that arrives within ``seconds``."""
        got: list[str] = []
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            self.sock.settimeout(left)
            try:
                got.append(self.receive()[0])
            except TimeoutError:
                break
        return got

    def close(self) -> None:
        self.sock.close()
