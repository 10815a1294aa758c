"""Every command's argument types, and the flags every server command shares.

One rule for every ``ioreactor`` command (the framework's and the tools'): a bad value is
refused while the command line is parsed, by a ``type=`` function from this module, and
the user reads one line, ``ioreactor: error: ...``, with exit status 2 -- never a
traceback, never a value accepted silently. Ports are checked inside addresses (0, "the
kernel picks", only where a server listens). A test walks every option of every command
with bad values (tests/cli/test_arguments.py) and checks that each one uses a type from
here or a fixed set of choices.

    argv -> CommandLineParser (types below) -> args -> command -> run_server / ...
                  |
                  +-> bad value: "ioreactor: error: serve: argument --workers: ..." exit 2

The library (``ioreactor.multicore`` and below) never imports argparse: the flags of the
serving layer are described here and turned into :func:`~ioreactor.multicore.run_server`'s
keyword arguments by :func:`serving_options`.
"""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, NoReturn, TypeVar

from ioreactor.loop.poller import available_pollers
from ioreactor.multicore.config import DISPATCHES, default_workers
from ioreactor.net.address import (
    KINDS,
    STREAM_KINDS,
    Address,
    AddressError,
    parse_address,
)
from ioreactor.net.proxy_protocol import ProxyTrust
from ioreactor.net.server import BALANCES, SHUTDOWN_TIMEOUT
from ioreactor.net.sockopt import KeepAlive, SockOpt, SockOptError, parse_sockopt


class CommandError(Exception):
    """Input a command cannot serve, found after parsing (an application that does not
    import, a flag that does not apply): ``main`` prints it as one line and exits with
    ``status`` (2, as for a bad argument; 1 for what the system refused, such as a
    port in use)."""

    def __init__(self, message: str, status: int = 2) -> None:
        super().__init__(message)
        self.status = status


class CommandLineParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line: ``ioreactor: error: CMD: ...``.

    Sub-command parsers are built by ``add_subparsers`` with the class of their parent,
    so every command, plugins included, reports its errors the same way.
    """

    def error(self, message: str) -> NoReturn:
        command = self.prog.partition(" ")[2]
        where = f"{command}: " if command else ""
        self.exit(2, f"ioreactor: error: {where}{message} (see '{self.prog} --help')\n")


# -- numbers ----------------------------------------------------------------------------

_N = TypeVar("_N", int, float)


def _integer(text: str) -> int:
    try:
        return int(text.replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None


def _real(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def _checked(
    parse: Callable[[str], _N], rule: str, ok: Callable[[_N], bool], name: str
) -> Callable[[str], _N]:
    """A type that parses a number with ``parse`` and refuses it unless ``ok``:
    ``must be {rule}, got {text}``."""

    def number(text: str) -> _N:
        value = parse(text)
        if not ok(value):
            raise argparse.ArgumentTypeError(f"must be {rule}, got {text}")
        return value

    number.__name__ = number.__qualname__ = name
    return number


#: A whole number >= 0 (``--workers 0``: serve in this process).
count = _checked(_integer, ">= 0", lambda v: v >= 0, "count")
#: A whole number >= 1 (connections, sizes, rounds, ...).
positive_count = _checked(_integer, ">= 1", lambda v: v >= 1, "positive_count")
#: A duration > 0 seconds (finite).
seconds = _checked(_real, "> 0 seconds", lambda v: v > 0, "seconds")
#: A duration >= 0 seconds (0: none, e.g. no warm-up).
seconds_or_zero = _checked(_real, ">= 0 seconds", lambda v: v >= 0, "seconds_or_zero")
#: A share: 0 < value <= 1.
fraction = _checked(_real, "> 0 and <= 1", lambda v: 0 < v <= 1, "fraction")
#: A user id (>= 0).
uid = _checked(_integer, ">= 0 (a uid)", lambda v: v >= 0, "uid")


def count_list(text: str) -> tuple[int, ...]:
    """``--conns 100,1_000``: comma-separated whole numbers, each >= 1."""
    return tuple(positive_count(part) for part in text.split(","))


def names_from(known: Iterable[str], what: str = "name") -> Callable[[str], tuple[str, ...]]:
    """A type for comma-separated names out of ``known``; ``what`` names them in the
    error (``unknown server(s) 'x'; known: ...``)."""
    choices = tuple(known)

    def names(text: str) -> tuple[str, ...]:
        given = tuple(part.strip() for part in text.split(","))
        unknown = [n for n in given if n not in choices]
        if unknown:
            raise argparse.ArgumentTypeError(
                f"unknown {what}(s) {', '.join(map(repr, unknown))}; known: {', '.join(choices)}"
            )
        return given

    names.__name__ = f"{what}_list"
    return names


#: ``--log-level`` names, quietest last.
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def log_level(text: str) -> str:
    """A logging level name, any case (``debug``, ``INFO``)."""
    level = text.upper()
    if level not in LOG_LEVELS:
        raise argparse.ArgumentTypeError(f"unknown level {text!r}; known: {', '.join(LOG_LEVELS)}")
    return level


def one_of(known: Iterable[str], what: str = "name") -> Callable[[str], str]:
    """A type for one name out of ``known``: ``choices=`` for a positional with
    ``nargs="*"`` and a default (argparse checks the default list against choices)."""
    choices = tuple(known)

    def name(text: str) -> str:
        if text not in choices:
            raise argparse.ArgumentTypeError(
                f"unknown {what} {text!r}; known: {', '.join(choices)}"
            )
        return text

    name.__name__ = what
    return name


# -- URLs -----------------------------------------------------------------------------------


def url_path(text: str) -> str:
    """A path where an application is mounted (``--root-path /app``): "" or absolute,
    ASCII, without a query, fragment or whitespace; returned without a final slash."""
    if text == "":
        return text
    if not text.startswith("/"):
        raise argparse.ArgumentTypeError(f"a path starts with '/', got {text!r}")
    if any(c in text for c in "?#") or any(c.isspace() or ord(c) < 32 for c in text):
        raise argparse.ArgumentTypeError(f"{text!r}: a path has no query, fragment or spaces")
    if not text.isascii():
        raise argparse.ArgumentTypeError(f"{text!r}: percent-encode non-ASCII characters")
    return text.rstrip("/")


# -- files --------------------------------------------------------------------------------


def existing_dir(text: str) -> str:
    """A directory that exists (``--static DIR``, ``--app-dir DIR``); returned absolute."""
    path = Path(text).expanduser()
    if not path.exists():
        raise argparse.ArgumentTypeError(f"directory {text!r} does not exist")
    if not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is not a directory")
    return str(path.resolve())


def readable_file(text: str) -> str:
    """A file that exists and can be read; returned absolute (workers may chdir)."""
    path = os.path.abspath(os.path.expanduser(text))
    if not os.path.isfile(path):
        raise argparse.ArgumentTypeError(f"file {text!r} does not exist")
    if not os.access(path, os.R_OK):
        raise argparse.ArgumentTypeError(f"file {text!r} is not readable")
    return path


def output_dir(text: str) -> Path:
    """Where results go: created if missing, but not a file and not in a missing place
    that cannot be created (checked by walking up to the first existing directory)."""
    path = Path(text).expanduser()
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} exists and is not a directory")
    parent = path
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r}: {str(parent)!r} is not a directory")
    if not os.access(parent, os.W_OK):
        raise argparse.ArgumentTypeError(f"{text!r}: {str(parent)!r} is not writable")
    return path


# -- addresses ----------------------------------------------------------------------------


def _address_type(kinds: tuple[str, ...], *, listen: bool) -> Callable[[str], Address]:
    def address(text: str) -> Address:
        try:
            parsed = parse_address(text)
        except AddressError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        if parsed.kind not in kinds:
            raise argparse.ArgumentTypeError(
                f"{text!r} is a {parsed.kind} address; this option takes "
                + " or ".join(k + "://" for k in kinds)
            )
        if parsed.is_unix and not parsed.is_abstract:
            directory = os.path.dirname(parsed.path)
            if not os.path.isdir(directory):
                raise argparse.ArgumentTypeError(f"{text!r}: directory {directory} does not exist")
        if listen is False and not parsed.is_unix and parsed.port == 0:
            raise argparse.ArgumentTypeError(f"{text!r}: port 0 cannot be connected to")
        return parsed

    address.__name__ = "address"
    return address


#: ``--listen`` of a TCP-only server.
tcp_listen_address = _address_type(("tcp",), listen=True)
#: ``--connect`` of a client of any kind.
connect_address = _address_type(KINDS, listen=False)
#: ``--connect`` of a TCP-only client.
tcp_connect_address = _address_type(("tcp",), listen=False)


def proxy_trust(text: str) -> ProxyTrust:
    """``--proxy-allow-ips``: comma-separated addresses and networks, ``unix``, ``*``."""
    try:
        return ProxyTrust(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def absolute_url_path(text: str) -> str:
    """An absolute URL path (``--health-path /healthz``)."""
    if not text.startswith("/") or any(c in text for c in " ?#\r\n\0"):
        raise argparse.ArgumentTypeError(
            f"expected an absolute path like /healthz (no spaces, query or fragment), got {text!r}"
        )
    return text


def sockopt(text: str) -> SockOpt:
    """``NAME=VALUE`` socket option (``SO_RCVBUF=65536``, ``TCP_NODELAY=0``)."""
    try:
        return parse_sockopt(text)
    except SockOptError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def keepalive_timers(text: str) -> KeepAlive:
    """``IDLE:INTERVAL:COUNT``: TCP keepalive timers in whole seconds and probes (60:10:3)."""
    try:
        idle, interval, probes = (int(part) for part in text.split(":"))
        return KeepAlive(idle, interval, probes)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f"expected IDLE:INTERVAL:COUNT in whole seconds/probes, e.g. 60:10:3 ({exc})"
        ) from None


# -- the flags of every server command ------------------------------------------------------


def add_serving_arguments(
    p: argparse.ArgumentParser,
    default_listen: str = "127.0.0.1:7000",
    *,
    repeat: bool = False,
    kinds: tuple[str, ...] = STREAM_KINDS,
) -> None:
    """Add --listen, --poller, --backlog, --workers, --loops, --dispatch, --balance, ...

    With ``repeat``, ``--listen`` may be given several times (``args.listen`` is then a
    list of :class:`Address`, or None when absent: the caller applies
    ``default_listen``). ``kinds``: the address kinds ``--listen`` takes.
    """
    address = _address_type(kinds, listen=True)
    schemes = ", ".join(k + "://" for k in kinds)
    if repeat:
        p.add_argument(
            "--listen",
            action="append",
            type=address,
            default=None,
            metavar="ADDRESS",
            help=f"HOST:PORT or {schemes} address; repeat to serve several "
            f"(default {default_listen})",
        )
    else:
        p.add_argument(
            "--listen",
            type=address,
            default=parse_address(default_listen),
            metavar="ADDRESS",
            help=f"HOST:PORT, [V6]:PORT or {schemes} address (default {default_listen})",
        )
    p.add_argument(
        "--poller",
        choices=available_pollers(),
        default=None,
        help="I/O backend: a poller, or uring (io_uring completion mode) "
        "(default: the best poller this OS has)",
    )
    p.add_argument(
        "--backlog", type=positive_count, default=1024, help="listen() backlog (default 1024)"
    )
    p.add_argument(
        "--workers",
        type=count,
        default=None,
        metavar="M",
        help=f"worker processes (default: one per core, {default_workers()} here; 0: no fork)",
    )
    p.add_argument(
        "--loops",
        type=count,
        default=0,
        metavar="N",
        help="sub-reactor threads per process (default 0: one loop accepts and serves)",
    )
    p.add_argument(
        "--dispatch",
        choices=DISPATCHES,
        default=None,
        help="how workers get connections: their own SO_REUSEPORT listeners, or fds "
        "passed by the supervisor (default: reuseport for TCP on Linux, fdpass for "
        "Unix sockets and elsewhere)",
    )
    p.add_argument(
        "--balance",
        choices=BALANCES,
        default="round-robin",
        help="how a connection picks a worker (fdpass) and a sub-loop (default %(default)s)",
    )
    p.add_argument(
        "--shutdown-timeout",
        type=seconds_or_zero,
        default=SHUTDOWN_TIMEOUT,
        metavar="S",
        help="on SIGTERM/SIGINT, seconds connections get to finish (default %(default)s); "
        "a second SIGINT stops at once",
    )
    add_proxy_arguments(p)


#: Who may send a PROXY header or forwarding headers, unless ``--proxy-allow-ips`` says.
DEFAULT_PROXY_TRUST = "127.0.0.1,::1"


def add_proxy_arguments(p: argparse.ArgumentParser) -> None:
    """``--proxy-protocol`` and the trust list it shares with forwarding headers
    (``--proxy-allow-ips``, also spelled ``--forwarded-allow-ips`` as uvicorn does)."""
    p.add_argument(
        "--proxy-protocol",
        action="store_true",
        help="every connection from a --proxy-allow-ips peer starts with a PROXY protocol "
        "header (v1 or v2) naming the client; others are refused",
    )
    p.add_argument(
        "--proxy-allow-ips",
        "--forwarded-allow-ips",
        dest="proxy_allow_ips",
        type=proxy_trust,
        default=ProxyTrust(DEFAULT_PROXY_TRUST),
        metavar="IPS",
        help="the proxies: addresses and networks, comma-separated ('*': any peer, "
        f"'unix': Unix-socket peers) trusted for PROXY headers and, with --proxy-headers, "
        f"Forwarded / X-Forwarded-For / X-Forwarded-Proto (default {DEFAULT_PROXY_TRUST})",
    )


def serving_options(args: argparse.Namespace) -> dict[str, Any]:
    """The keyword arguments of :func:`~ioreactor.multicore.run_server` from those flags."""
    return {
        "address": args.listen,
        "workers": args.workers,
        "loops": args.loops,
        "dispatch": args.dispatch,
        "balance": args.balance,
        "poller": args.poller,
        "backlog": args.backlog,
        "shutdown_timeout": args.shutdown_timeout,
        "proxy_protocol": args.proxy_allow_ips if args.proxy_protocol else None,
    }
