"""Two network namespaces joined by a veth pair: a link the lab can cut.

A peer that vanishes without FIN or RST (power loss, cable pulled) cannot be staged on
loopback: the local kernel always answers. Here each end of a veth pair lives in its own
namespace, so taking one end down makes the other side's packets disappear silently.
Needs CAP_SYS_ADMIN and CAP_NET_ADMIN (``ip netns``, ``setns``); the namespaces and the
pair are created and deleted here, and addresses exist only on the pair.

Sockets are created inside a namespace by switching the calling thread into it with
``setns`` just for the ``socket()`` call; a socket stays in the namespace it was created
in, so the rest of the program uses it like any other.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import socket
import subprocess
from collections.abc import Iterator

CLONE_NEWNET = 0x40000000
ADDRESSES = ("10.213.0.1", "10.213.0.2")  # a /30 that exists only inside the pair


class NamespaceUnavailable(RuntimeError):
    """Namespaces cannot be created here (no privileges, no ``ip``, no kernel support)."""


def _ip(*args: str) -> None:
    try:
        subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=10)
    except FileNotFoundError as exc:
        raise NamespaceUnavailable("the `ip` command (iproute2) is not installed") from exc
    except subprocess.CalledProcessError as exc:
        raise NamespaceUnavailable(f"ip {' '.join(args)}: {exc.stderr.strip()}") from exc


def _setns(fd: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise NamespaceUnavailable(f"setns: {os.strerror(err)}")


class VethPair:
    """Namespaces ``a`` and ``b`` with ``ADDRESSES[0]`` in ``a`` and ``ADDRESSES[1]`` in ``b``."""

    def __init__(self, tag: str) -> None:
        suffix = f"{tag}{os.getpid()}"
        self.names = (f"ioreactor-{suffix}-a", f"ioreactor-{suffix}-b")
        self.links = (f"ior{os.getpid()}a", f"ior{os.getpid()}b")  # at most 15 characters

    def __enter__(self) -> VethPair:
        try:
            for ns in self.names:
                _ip("netns", "add", ns)
            _ip(
                "link",
                "add",
                self.links[0],
                "netns",
                self.names[0],
                "type",
                "veth",
                "peer",
                "name",
                self.links[1],
                "netns",
                self.names[1],
            )
            for ns, link, address in zip(self.names, self.links, ADDRESSES, strict=True):
                _ip("-n", ns, "addr", "add", f"{address}/30", "dev", link)
                _ip("-n", ns, "link", "set", link, "up")
        except BaseException:
            self._delete()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._delete()

    def _delete(self) -> None:
        """Deleting a namespace destroys the veth end inside it, and with it the pair."""
        for ns in self.names:
            subprocess.run(["ip", "netns", "delete", ns], capture_output=True, check=False)

    def socket(self, side: int, kind: int = socket.SOCK_STREAM) -> socket.socket:
        """A new IPv4 socket living in namespace ``side`` (0 or 1)."""
        with self._inside(side):
            return socket.socket(socket.AF_INET, kind)

    def link_down(self, side: int) -> None:
        """Take one end down: the other end loses carrier and drops what it sends."""
        _ip("-n", self.names[side], "link", "set", self.links[side], "down")

    @contextlib.contextmanager
    def _inside(self, side: int) -> Iterator[None]:
        home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        target = os.open(f"/run/netns/{self.names[side]}", os.O_RDONLY)
        try:
            _setns(target)
            try:
                yield
            finally:
                _setns(home)
        finally:
            os.close(target)
            os.close(home)
