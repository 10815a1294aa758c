"""systemd's side of a service: inherited listeners and the notify protocol.

Data flow::

    systemd (or systemd-socket-activate) binds, then execs us with fds 3, 4, ... and
    LISTEN_PID / LISTEN_FDS / LISTEN_FDNAMES -> listen_fds() -> [ListenSocket(name, sock)]
                                                -> TcpServer(loop, addr, h, listener=sock)
    service state -> Notifier.ready() / reloading() / stopping() / status() / watchdog()
                  -> one datagram ("READY=1\\nSTATUS=...") -> NOTIFY_SOCKET

Socket activation (sd_listen_fds(3)): the variables are for the process whose pid is
LISTEN_PID only (a child that inherits them must not take the fds); the fds start at 3
(:data:`SD_LISTEN_FDS_START`), in the order of the socket unit; LISTEN_FDNAMES names them
(colon-separated; "unknown" when unset). The variables are removed once read, so the
processes we start do not inherit them, unless asked to keep them.

The notify protocol (sd_notify(3)): newline-separated ``KEY=VALUE`` assignments in one
datagram to the Unix socket NOTIFY_SOCKET names, a path (``/run/systemd/notify``) or an
abstract name (``@...``). Without NOTIFY_SOCKET (not started by systemd, or a unit not
of Type=notify) every call is a no-op. The watchdog (sd_watchdog_enabled(3)):
WATCHDOG_USEC is the timeout, for the process WATCHDOG_PID names when it is set; ping
with ``WATCHDOG=1`` at half of it.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import stat
import time
from dataclasses import dataclass

from ioreactor.net.address import Address

log = logging.getLogger("ioreactor.systemd")

#: The first inherited fd (after stdin, stdout and stderr).
SD_LISTEN_FDS_START = 3
#: The socket activation variables (LISTEN_PIDFDID: systemd >= 256 pins the pid further).
LISTEN_VARIABLES = ("LISTEN_PID", "LISTEN_PIDFDID", "LISTEN_FDS", "LISTEN_FDNAMES")
#: Seconds a notification may wait for room in the service manager's socket queue.
NOTIFY_TIMEOUT = 1.0

_DECIMAL = re.compile(r"[0-9]+")
_NOTIFY_KEY = re.compile(r"[A-Z][A-Z0-9_]*")


class SystemdError(RuntimeError):
    """The environment systemd left is not what its protocol says; the message says how."""


@dataclass(frozen=True)
class ListenSocket:
    """One inherited socket, non-blocking and close-on-exec, with its LISTEN_FDNAMES name."""

    name: str
    sock: socket.socket

    @property
    def fd(self) -> int:
        return self.sock.fileno()

    @property
    def family(self) -> socket.AddressFamily:
        return self.sock.family

    @property
    def type(self) -> socket.SocketKind:
        return self.sock.type

    @property
    def listening(self) -> bool:
        """A stream socket in the listening state (SO_ACCEPTCONN)."""
        return bool(self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN))


def listen_fds(*, keep_environment: bool = False) -> list[ListenSocket]:
    """The sockets systemd passed to this process (empty when it passed none, or passed
    them to another process), each with its name, family and type.

    The variables are removed from the environment, even when they are not for us or
    wrong, unless ``keep_environment``. Raises :class:`SystemdError` when they are
    malformed or an fd is not an open socket.
    """
    try:
        return _inherited_sockets()
    finally:
        if not keep_environment:
            for name in LISTEN_VARIABLES:
                os.environ.pop(name, None)


def _inherited_sockets() -> list[ListenSocket]:
    pid = os.environ.get("LISTEN_PID")
    if pid is None or _decimal("LISTEN_PID", pid) != os.getpid():
        return []
    count_text = os.environ.get("LISTEN_FDS")
    if count_text is None:
        return []
    count = _decimal("LISTEN_FDS", count_text)
    if count == 0:
        raise SystemdError("LISTEN_FDS=0: socket activation passes at least one fd")
    names_text = os.environ.get("LISTEN_FDNAMES")
    names = ["unknown"] * count if names_text is None else names_text.split(":")
    if len(names) != count:
        raise SystemdError(
            f"LISTEN_FDNAMES={names_text!r} names {len(names)} fd(s); LISTEN_FDS={count}"
        )
    fds = range(SD_LISTEN_FDS_START, SD_LISTEN_FDS_START + count)
    for fd in fds:  # close-on-exec first, as sd_listen_fds() does, before anything fails
        _set_cloexec(fd)
    adopted: list[ListenSocket] = []
    try:
        for fd, name in zip(fds, names, strict=True):
            adopted.append(ListenSocket(name, _adopt(fd)))
    except BaseException:
        for done in adopted:
            done.sock.detach()  # a failed call closes none of the fds it was given
        raise
    return adopted


def listening_address(sock: socket.socket) -> Address:
    """The address an inherited stream listener is bound to (what it serves)."""
    name = sock.getsockname()
    if sock.family == socket.AF_UNIX:
        if isinstance(name, bytes):  # Linux gives abstract names as bytes
            name = "@" + os.fsdecode(name[1:]) if name[:1] == b"\0" else os.fsdecode(name)
        return Address.unix(name)
    return Address("tcp", name[0], name[1], sock.family)


def check_stream_listener(sock: socket.socket, what: str) -> socket.socket:
    """``sock`` if it is a listening stream socket; SystemdError naming ``what`` if not."""
    if sock.type != socket.SOCK_STREAM:
        raise SystemdError(f"{what} is a {sock.type.name} socket, not a stream listener")
    if not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
        raise SystemdError(f"{what} is a stream socket that does not listen")
    return sock


def socket_from_fd(fd: int) -> socket.socket:
    """The inherited socket ``fd`` (``--fd N``), non-blocking and close-on-exec, its
    family and type read from the kernel. Raises :class:`SystemdError` when ``fd`` is
    not an open socket."""
    if fd < 0:
        raise SystemdError(f"fd {fd}: not a file descriptor")
    _set_cloexec(fd)
    return _adopt(fd)


def _decimal(name: str, text: str) -> int:
    if not _DECIMAL.fullmatch(text):
        raise SystemdError(f"{name}={text!r} is not a decimal number")
    return int(text)


def _set_cloexec(fd: int) -> None:
    try:
        os.set_inheritable(fd, False)
    except OSError as exc:
        raise SystemdError(f"fd {fd} was to be inherited but is not open: {exc.strerror}") from None


def _adopt(fd: int) -> socket.socket:
    """A socket object owning ``fd``; CPython reads its family, type and protocol from
    the kernel (SO_DOMAIN, SO_TYPE, SO_PROTOCOL)."""
    mode = os.fstat(fd).st_mode
    if not stat.S_ISSOCK(mode):
        kind = "a FIFO" if stat.S_ISFIFO(mode) else f"file type 0o{stat.S_IFMT(mode):o}"
        raise SystemdError(f"fd {fd} is {kind}, not a socket")
    sock = socket.socket(fileno=fd)
    sock.setblocking(False)  # ready for the loop: an accept must never block it
    return sock


class Notifier:
    """Tells the service manager how the service is doing (sd_notify(3)).

    ``address``: the notify socket (default: NOTIFY_SOCKET); a path or ``@abstract``.
    ``unset_environment`` removes NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID once
    read, so processes started later do not notify in our name. Every method returns
    whether a datagram left; without a notify socket they do nothing and return False.
    A failed send is logged (once until the next success), never raised: the service
    goes on serving. A malformed NOTIFY_SOCKET, WATCHDOG_USEC or WATCHDOG_PID raises
    :class:`SystemdError` here, at construction.
    """

    def __init__(self, address: str | None = None, *, unset_environment: bool = False) -> None:
        env = os.environ
        if address is None:
            address = env.get("NOTIFY_SOCKET") or None
        self.address = address
        self._sockaddr = _notify_sockaddr(address) if address is not None else None
        self._watchdog_usec = _watchdog_usec(env.get("WATCHDOG_USEC"), env.get("WATCHDOG_PID"))
        if unset_environment:
            for name in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
                env.pop(name, None)
        self._sock: socket.socket | None = None
        self._failing = False

    def __repr__(self) -> str:
        return f"<Notifier {self.address or 'disabled'}>"

    @property
    def enabled(self) -> bool:
        return self._sockaddr is not None

    def notify(self, *assignments: str) -> bool:
        """Send ``KEY=VALUE`` assignments in one datagram (sd_notify's state string)."""
        for line in assignments:
            key, eq, value = line.partition("=")
            if not eq or not _NOTIFY_KEY.fullmatch(key) or "\n" in value:
                raise ValueError(f"{line!r} is not one KEY=VALUE assignment (KEY in A-Z0-9_)")
        if self._sockaddr is None:
            return False
        if self._sock is None:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.settimeout(NOTIFY_TIMEOUT)
        try:
            self._sock.sendto("\n".join(assignments).encode(), self._sockaddr)
        except OSError as exc:
            level = logging.DEBUG if self._failing else logging.WARNING
            log.log(level, "sd_notify to %s failed: %s", self.address, exc)
            self._failing = True
            return False
        self._failing = False
        return True

    def ready(self, status: str | None = None) -> bool:
        """Start-up (or a reload) is complete: every listener accepts."""
        return self.notify("READY=1", *_status(status))

    def reloading(self, status: str | None = None) -> bool:
        """A reload begins; say :meth:`ready` when it is done. MONOTONIC_USEC dates it
        (Type=notify-reload needs it, systemd >= 253)."""
        now_usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.notify("RELOADING=1", f"MONOTONIC_USEC={now_usec}", *_status(status))

    def stopping(self, status: str | None = None) -> bool:
        """Shutdown begins."""
        return self.notify("STOPPING=1", *_status(status))

    def status(self, text: str) -> bool:
        """A one-line status shown by ``systemctl status``."""
        return self.notify(*_status(text))

    def watchdog(self) -> bool:
        """Ping the watchdog: the service is alive."""
        return self.notify("WATCHDOG=1")

    def watchdog_timeout(self) -> float | None:
        """Seconds without a ping after which systemd kills the service, or None when
        the watchdog is off, is for another process (WATCHDOG_PID), or cannot be fed
        (no notify socket)."""
        if self._sockaddr is None or self._watchdog_usec is None:
            return None
        return self._watchdog_usec / 1e6

    def watchdog_interval(self) -> float | None:
        """How often to ping: half the timeout (sd_watchdog_enabled(3)), or None."""
        timeout = self.watchdog_timeout()
        return None if timeout is None else timeout / 2

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _status(text: str | None) -> tuple[str, ...]:
    if text is None:
        return ()
    if "\n" in text:
        raise ValueError(f"a status is one line, got {text!r}")
    return (f"STATUS={text}",)


def _notify_sockaddr(address: str) -> str:
    if address.startswith("@"):
        return "\0" + address[1:]
    if address.startswith("/"):
        if len(os.fsencode(address)) >= 108:
            raise SystemdError(f"NOTIFY_SOCKET {address!r} is longer than a Unix socket path")
        return address
    raise SystemdError(
        f"NOTIFY_SOCKET {address!r} is neither a socket path (/...) nor an abstract name "
        "(@...); other kinds (vsock) are not supported"
    )


def _watchdog_usec(usec: str | None, pid: str | None) -> int | None:
    if usec is None:
        return None
    if not _DECIMAL.fullmatch(usec) or int(usec) == 0:
        raise SystemdError(f"WATCHDOG_USEC={usec!r} is not a positive number of microseconds")
    if pid is not None:
        if not _DECIMAL.fullmatch(pid):
            raise SystemdError(f"WATCHDOG_PID={pid!r} is not a process id")
        if int(pid) != os.getpid():
            return None  # the watchdog watches another process (our parent, say)
    return int(usec)
