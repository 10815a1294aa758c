"""Socket options the course discusses, named and validated, and the fd limit.

:data:`SOCKOPTS` is the table ``NAME -> SockOptSpec(level, option, parser, kinds)``;
:func:`parse_sockopt` turns ``NAME=VALUE`` (the ``--sockopt`` flag) into a
:class:`SockOpt` that can be applied to a socket and read back. An option that does not
apply to a socket's kind (``TCP_NODELAY`` on a UDP socket) is an error, not a no-op.

Listeners: Linux copies every option here except ``TCP_QUICKACK`` from a listening
socket to the sockets it accepts, so setting them once on the listener configures every
connection without a system call per accept. ``TCP_QUICKACK`` is per connection (and
not sticky: the kernel may leave quick-ack mode again), see :attr:`SockOptSpec.inherited`.
"""

from __future__ import annotations

import resource
import socket
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from ioreactor.net.address import KINDS


class SockOptError(ValueError):
    """A ``NAME=VALUE`` that names no option, has a bad value, or does not fit the socket."""


#: Linux's limits for the keepalive timers (MAX_TCP_KEEPIDLE, MAX_TCP_KEEPINTVL, ...CNT).
KEEPIDLE_MAX = 32767
KEEPINTVL_MAX = 32767
KEEPCNT_MAX = 127
#: SO_LINGER's l_linger is an int of seconds; beyond this a close could block for hours.
LINGER_MAX = 65535
#: Largest SO_SNDBUF/SO_RCVBUF request (the kernel doubles it and stores an int).
BUFFER_MAX = (2**31 - 1) // 2


@dataclass(frozen=True)
class KeepAlive:
    """Kernel TCP keepalive timers (Linux defaults: 7200 s idle, 75 s interval, 9 probes).

    With the defaults a dead peer is noticed after 2 h + 9 x 75 s, which is why
    applications add their own heartbeat (see :mod:`ioreactor.heartbeat`).
    """

    idle: int = 7200
    interval: int = 75
    count: int = 9

    def __post_init__(self) -> None:
        for name, limit in (("idle", KEEPIDLE_MAX), ("interval", KEEPINTVL_MAX)):
            value = getattr(self, name)
            if not isinstance(value, int) or not 1 <= value <= limit:
                raise ValueError(f"keepalive {name} must be an integer 1-{limit}, got {value!r}")
        if not isinstance(self.count, int) or not 1 <= self.count <= KEEPCNT_MAX:
            raise ValueError(
                f"keepalive count must be an integer 1-{KEEPCNT_MAX}, got {self.count!r}"
            )


def set_keepalive(sock: socket.socket, keepalive: KeepAlive | None) -> None:
    """Enable SO_KEEPALIVE with the given timers, or disable it for None."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1 if keepalive else 0)
    if keepalive is None:
        return
    if hasattr(socket, "TCP_KEEPIDLE"):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, keepalive.idle)
    if hasattr(socket, "TCP_KEEPINTVL"):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, keepalive.interval)
    if hasattr(socket, "TCP_KEEPCNT"):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, keepalive.count)


def is_tcp(sock: socket.socket) -> bool:
    return sock.family in (socket.AF_INET, socket.AF_INET6)


def socket_kind(sock: socket.socket) -> str:
    """The address kind (``tcp``, ``udp``, ``unix``, ``unix-dgram``) of a socket."""
    stream = sock.type == socket.SOCK_STREAM
    if sock.family == socket.AF_UNIX:
        return "unix" if stream else "unix-dgram"
    return "tcp" if stream else "udp"


def raise_nofile_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit; returns the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return soft


# -- value parsers: text -> validated value (raise ValueError with the expected form) ---

_TRUE = frozenset({"1", "on", "true", "yes"})
_FALSE = frozenset({"0", "off", "false", "no"})


def _parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError("expected 1/0, on/off, true/false or yes/no")


def _parse_int(text: str, low: int, high: int) -> int:
    text = text.strip()
    if not (text.isascii() and text.isdigit()):
        raise ValueError(f"expected an integer {low}-{high}")
    value = int(text)
    if not low <= value <= high:
        raise ValueError(f"{value} is out of range {low}-{high}")
    return value


_SIZE_SUFFIXES = {"k": 1024, "kib": 1024, "m": 1024**2, "mib": 1024**2}


def _parse_size(text: str) -> int:
    lowered = text.strip().lower()
    digits = lowered.rstrip("kmib")
    suffix = lowered[len(digits) :]
    if not (digits.isascii() and digits.isdigit()) or (suffix and suffix not in _SIZE_SUFFIXES):
        raise ValueError("expected a size in bytes, optionally with K or M (e.g. 65536, 256K)")
    value = int(digits) * _SIZE_SUFFIXES.get(suffix, 1)
    if not 1 <= value <= BUFFER_MAX:
        raise ValueError(f"{value} bytes is out of range 1-{BUFFER_MAX}")
    return value


def _parse_linger(text: str) -> int | None:
    """``off`` -> None (normal close); ``0`` -> abortive close (RST); ``N`` -> linger N s."""
    lowered = text.strip().lower()
    if lowered in _FALSE - {"0"}:
        return None
    try:
        return _parse_int(lowered, 0, LINGER_MAX)
    except ValueError:
        raise ValueError(
            f"expected off, or seconds 0-{LINGER_MAX} (0 = abortive close: RST, no TIME_WAIT)"
        ) from None


def _parse_keepalive(text: str) -> bool | KeepAlive:
    """``on``/``off``, or ``IDLE,INTERVAL,COUNT`` (seconds, seconds, probes)."""
    if "," not in text and ":" not in text:
        try:
            return _parse_bool(text)
        except ValueError:
            raise ValueError("expected on/off or IDLE,INTERVAL,COUNT (e.g. 60,10,5)") from None
    parts = text.replace(":", ",").split(",")
    if len(parts) != 3:
        raise ValueError("expected IDLE,INTERVAL,COUNT: three numbers (e.g. 60,10,5)")
    idle = _parse_int(parts[0], 1, KEEPIDLE_MAX)
    interval = _parse_int(parts[1], 1, KEEPINTVL_MAX)
    return KeepAlive(idle, interval, _parse_int(parts[2], 1, KEEPCNT_MAX))


# -- the table --------------------------------------------------------------------------


@dataclass(frozen=True)
class SockOptSpec:
    """One named option: where it lives, how its value is written, where it applies."""

    name: str
    level: int
    option: int
    parse: Callable[[str], Any]
    kinds: tuple[str, ...]
    help: str
    #: Only for sockets of this family (IPV6_V6ONLY: AF_INET6).
    family: int | None = None
    #: Copied from a listener to the sockets it accepts (Linux).
    inherited: bool = True
    #: How a value is written with setsockopt (default: an int, bools as 0/1).
    encode: Callable[[Any], int | bytes] = int
    #: How getsockopt's result (an int, or ``size`` bytes) reads back as a value.
    decode: Callable[[Any], Any] = int
    #: getsockopt buffer length for struct options (0: an int).
    size: int = 0

    def check(self, kind: str, family: int | None = None) -> None:
        """Raise :class:`SockOptError` if the option does not apply to this socket kind."""
        if kind not in self.kinds:
            raise SockOptError(
                f"{self.name} does not apply to {kind} sockets (it applies to "
                f"{', '.join(self.kinds)})"
            )
        if self.family is not None and family is not None and family != self.family:
            raise SockOptError(
                f"{self.name} applies to IPv6 sockets only (this one is "
                f"{socket.AddressFamily(family).name})"
            )

    def set(self, sock: socket.socket, value: Any) -> None:
        """Write ``value`` (already parsed) to ``sock``."""
        sock.setsockopt(self.level, self.option, self.encode(value))

    def get(self, sock: socket.socket) -> Any:
        """Read the option back from ``sock``, in the form :attr:`parse` produces."""
        if self.size:
            return self.decode(sock.getsockopt(self.level, self.option, self.size))
        return self.decode(sock.getsockopt(self.level, self.option))


_LINGER = struct.Struct("ii")


def _encode_linger(value: int | None) -> bytes:
    return _LINGER.pack(0, 0) if value is None else _LINGER.pack(1, value)


def _decode_linger(raw: bytes) -> int | None:
    onoff, seconds = _LINGER.unpack(raw)
    return seconds if onoff else None


class _KeepAliveSpec(SockOptSpec):
    """SO_KEEPALIVE plus its three TCP timers, set and read as one :class:`KeepAlive`."""

    def set(self, sock: socket.socket, value: Any) -> None:
        if isinstance(value, KeepAlive):
            set_keepalive(sock, value)
        else:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1 if value else 0)

    def get(self, sock: socket.socket) -> KeepAlive | None:
        """None when off; else the timers in effect."""
        if not sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE):
            return None
        return KeepAlive(
            sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE),
            sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL),
            sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT),
        )


_IP = ("tcp", "udp")
_ALL = KINDS


def _table() -> dict[str, SockOptSpec]:
    sol, tcp = socket.SOL_SOCKET, socket.IPPROTO_TCP
    specs = [
        SockOptSpec(
            "SO_REUSEADDR",
            sol,
            socket.SO_REUSEADDR,
            _parse_bool,
            _IP,
            "bind a port whose old connections are in TIME_WAIT (on by default for TCP servers)",
            decode=bool,
        ),
        SockOptSpec(
            "SO_REUSEPORT",
            sol,
            socket.SO_REUSEPORT,
            _parse_bool,
            _IP,
            "several sockets bind one port; the kernel spreads connections/datagrams",
            decode=bool,
        ),
        SockOptSpec(
            "TCP_NODELAY",
            tcp,
            socket.TCP_NODELAY,
            _parse_bool,
            ("tcp",),
            "disable Nagle's algorithm (small writes leave at once)",
            decode=bool,
        ),
        _KeepAliveSpec(
            "SO_KEEPALIVE",
            sol,
            socket.SO_KEEPALIVE,
            _parse_keepalive,
            ("tcp",),
            "kernel keepalive probes: on/off, or IDLE,INTERVAL,COUNT timers",
        ),
        SockOptSpec(
            "TCP_KEEPIDLE",
            tcp,
            socket.TCP_KEEPIDLE,
            lambda t: _parse_int(t, 1, KEEPIDLE_MAX),
            ("tcp",),
            "seconds of silence before the first keepalive probe",
        ),
        SockOptSpec(
            "TCP_KEEPINTVL",
            tcp,
            socket.TCP_KEEPINTVL,
            lambda t: _parse_int(t, 1, KEEPINTVL_MAX),
            ("tcp",),
            "seconds between keepalive probes",
        ),
        SockOptSpec(
            "TCP_KEEPCNT",
            tcp,
            socket.TCP_KEEPCNT,
            lambda t: _parse_int(t, 1, KEEPCNT_MAX),
            ("tcp",),
            "unanswered probes before the connection is dropped",
        ),
        SockOptSpec(
            "SO_LINGER",
            sol,
            socket.SO_LINGER,
            _parse_linger,
            ("tcp",),
            "off, or seconds close() waits for unsent data; 0 = abortive close (RST)",
            encode=_encode_linger,
            decode=_decode_linger,
            size=_LINGER.size,
        ),
        SockOptSpec(
            "SO_SNDBUF",
            sol,
            socket.SO_SNDBUF,
            _parse_size,
            _ALL,
            "kernel send buffer bytes (Linux doubles the value and caps it at net.core.wmem_max)",
        ),
        SockOptSpec(
            "SO_RCVBUF",
            sol,
            socket.SO_RCVBUF,
            _parse_size,
            _ALL,
            "kernel receive buffer bytes (Linux doubles the value and caps it at "
            "net.core.rmem_max)",
        ),
        SockOptSpec(
            "IPV6_V6ONLY",
            socket.IPPROTO_IPV6,
            socket.IPV6_V6ONLY,
            _parse_bool,
            _IP,
            "0: an [::] socket also serves IPv4 (dual-stack); 1: IPv6 only",
            family=socket.AF_INET6,
            decode=bool,
        ),
    ]
    if hasattr(socket, "TCP_QUICKACK"):
        specs.append(
            SockOptSpec(
                "TCP_QUICKACK",
                tcp,
                socket.TCP_QUICKACK,
                _parse_bool,
                ("tcp",),
                "ACK at once instead of delaying (per connection; the kernel may reset it)",
                inherited=False,
                decode=bool,
            )
        )
    return {spec.name: spec for spec in specs}


#: Every named option: ``NAME -> SockOptSpec``.
SOCKOPTS: dict[str, SockOptSpec] = _table()


@dataclass(frozen=True)
class SockOpt:
    """A parsed ``NAME=VALUE``: :meth:`apply` it to a socket, :meth:`read` it back."""

    spec: SockOptSpec
    value: Any

    @property
    def name(self) -> str:
        return self.spec.name

    def check(self, kind: str, family: int | None = None) -> None:
        self.spec.check(kind, family)

    def apply(self, sock: socket.socket) -> None:
        """Check the option fits ``sock`` and set it."""
        self.spec.check(socket_kind(sock), sock.family)
        try:
            self.spec.set(sock, self.value)
        except OSError as exc:
            raise OSError(exc.errno, f"setting {self}: {exc.strerror}") from exc

    def read(self, sock: socket.socket) -> Any:
        return self.spec.get(sock)

    def __str__(self) -> str:
        value = self.value
        if isinstance(value, KeepAlive):
            text = f"{value.idle},{value.interval},{value.count}"
        elif value is None:
            text = "off"
        else:
            text = str(int(value))
        return f"{self.name}={text}"


def parse_sockopt(text: str) -> SockOpt:
    """Parse ``NAME=VALUE`` (name case-insensitive); errors name the option and the problem."""
    name, sep, value = text.partition("=")
    name = name.strip().upper()
    if not sep or not name:
        raise SockOptError(f"{text!r}: expected NAME=VALUE (e.g. TCP_NODELAY=1)")
    spec = SOCKOPTS.get(name)
    if spec is None:
        if name == "TCP_QUICKACK":
            raise SockOptError(f"{text!r}: TCP_QUICKACK is not available on this OS")
        raise SockOptError(
            f"{text!r}: unknown socket option {name!r} (known: {', '.join(SOCKOPTS)})"
        )
    if not value.strip():
        raise SockOptError(f"{text!r}: {name} needs a value")
    try:
        return SockOpt(spec, spec.parse(value))
    except ValueError as exc:
        raise SockOptError(f"{text!r}: bad value for {name}: {exc}") from None


def parse_sockopts(items: Iterable[str | SockOpt]) -> list[SockOpt]:
    """Parse several options; the same name twice is an error (which one would win?)."""
    opts = [item if isinstance(item, SockOpt) else parse_sockopt(item) for item in items]
    seen: set[str] = set()
    for opt in opts:
        if opt.name in seen:
            raise SockOptError(f"{opt.name} is given more than once")
        seen.add(opt.name)
    return opts


def apply_sockopts(sock: socket.socket, opts: Iterable[SockOpt]) -> None:
    """Apply every option to ``sock``; the first one that does not fit raises."""
    for opt in opts:
        opt.apply(sock)
