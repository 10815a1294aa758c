"""A test network of "hosts": network namespaces on one Linux bridge, made and removed by
the test itself.

Topology (every name carries a per-run id, so parallel workers never collide)::

    namespace  ioreactor-t-<id>-sw        one bridge, br0; one veth end per host
                 br0 --- h0    h1    h2 ...
                         |     |     |          veth pairs
    namespaces  <id>-lb  eth0  eth0  eth0  <id>-app1 ...   each: lo up, eth0 10.200.0.N/24

The bridge lives in a namespace of its own, so nothing is added to the machine's own
network namespace: the hosts reach each other and nothing else (no route off the
machine, and the same subnet can be used by several runs at once). Taking a host's
switch port down (:meth:`Host.link_down`) makes it vanish without FIN or RST: the dead
peer of the course.

``with Network({"lb": "10.200.0.2", "app1": "10.200.0.11"}) as net:`` builds it;
``net["app1"].spawn([...])`` runs a program inside a host (``ip netns exec``, its own
session, output to a log file); leaving the block, on success, failure or Ctrl-C, kills
every process in its namespaces and deletes them (deleting a namespace deletes the
interfaces inside it, the bridge included). A run killed outright leaves namespaces
behind: the next run deletes those whose creator is gone (:func:`remove_stale`).

Needs root (CAP_SYS_ADMIN, CAP_NET_ADMIN) and iproute2; :func:`network_or_skip` turns
the kernel's refusal to create a namespace into a skip that quotes it.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import secrets
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType

import pytest

from support.processes import KILL_TIMEOUT, Process, spawn

#: The test subnet: exists only on the test's bridge.
SUBNET_PREFIX = "10.200.0."
PREFIX_LENGTH = 24
#: Every namespace this module makes starts with this, then the creator's pid.
NAME_PREFIX = "ioreactor-t-"
#: Seconds any one ``ip`` command may take.
IP_TIMEOUT = 10.0
NETNS_RUN_DIR = Path("/run/netns")
CLONE_NEWNET = 0x40000000

_NAME = re.compile(r"[a-z][a-z0-9]{0,11}")


class NetnsUnavailable(RuntimeError):
    """This machine will not make network namespaces; the message is the kernel's reason."""


def ip(*args: str) -> str:
    """Run ``ip ARGS`` (bounded); its output, or RuntimeError with its message."""
    done = subprocess.run(
        ["ip", *args], capture_output=True, text=True, timeout=IP_TIMEOUT, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


class Host:
    """One namespace on the bridge: ``address`` on its ``eth0``, loopback up."""

    def __init__(self, network: Network, name: str, index: int, address: str) -> None:
        self.network = network
        self.name = name
        self.index = index
        self.address = address
        self.netns = f"{network.prefix}-{name}"
        self.port = f"h{index}"  # its veth end on the bridge, in the switch namespace
        self.processes: list[Process] = []

    def __repr__(self) -> str:
        return f"<Host {self.name} {self.address} in {self.netns}>"

    def command(self, argv: Sequence[str]) -> list[str]:
        """``argv`` prefixed to run inside this host."""
        return ["ip", "netns", "exec", self.netns, *argv]

    def run(
        self, argv: Sequence[str], timeout: float = IP_TIMEOUT
    ) -> subprocess.CompletedProcess[str]:
        """Run a short command inside this host and wait for it (bounded)."""
        return subprocess.run(
            self.command(argv), capture_output=True, text=True, timeout=timeout, check=False
        )

    def spawn(
        self,
        argv: Sequence[str],
        log_path: Path,
        *,
        env: Mapping[str, str] | None = None,
        stdout: int | None = None,
    ) -> Process:
        """Start ``argv`` inside this host (see :func:`support.processes.spawn`); it is
        killed with the network at the latest."""
        process = spawn(
            argv, log_path, where=self.name, prefix=self.command(()), env=env, stdout=stdout
        )
        self.processes.append(process)
        return process

    def pids(self) -> list[int]:
        """Every process inside this namespace (ours by construction: it is new)."""
        return _netns_pids(self.netns)

    def listening_ports(self) -> set[int]:
        """TCP ports in the LISTEN state inside this host (from /proc, opening nothing)."""
        done = self.run(["cat", "/proc/net/tcp", "/proc/net/tcp6"])
        ports = set()
        for line in done.stdout.splitlines():
            fields = line.split()
            if len(fields) > 3 and fields[3] == "0A":  # TCP_LISTEN
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
        return ports

    def wait_listening(self, port: int, timeout: float, process: Process | None = None) -> None:
        """Return once ``port`` listens inside this host; TimeoutError (or RuntimeError if
        ``process`` exits first) otherwise."""
        deadline = time.monotonic() + timeout
        while port not in self.listening_ports():
            if process is not None and not process.running():
                raise RuntimeError(
                    f"{process!r} exited with {process.wait(0)} before listening on "
                    f"{port}:\n{process.output()}"
                )
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listens on {self.name}:{port} after {timeout} s")
            time.sleep(0.05)

    @contextlib.contextmanager
    def inside(self) -> Iterator[None]:
        """Run the block's socket() calls in this host (this thread only, switched back
        after). A socket stays in the namespace it was made in."""
        home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        try:
            target = os.open(NETNS_RUN_DIR / self.netns, os.O_RDONLY)
            try:
                _setns(target)
                try:
                    yield
                finally:
                    _setns(home)
            finally:
                os.close(target)
        finally:
            os.close(home)

    def connect(self, address: str, port: int, timeout: float = IP_TIMEOUT) -> socket.socket:
        """A TCP connection from this host to ``address:port`` (blocking, with ``timeout``)."""
        with self.inside():
            return socket.create_connection((address, port), timeout=timeout)

    def link_down(self) -> None:
        """Unplug this host: its switch port goes down; its packets and those sent to it
        vanish without an answer (a dead peer: no FIN, no RST)."""
        ip("-n", self.network.switch, "link", "set", self.port, "down")

    def link_up(self) -> None:
        ip("-n", self.network.switch, "link", "set", self.port, "up")

    def kill_all(self) -> None:
        """SIGKILL every process started here and every one left in the namespace."""
        for process in self.processes:
            process.kill_group()
        for process in self.processes:
            with contextlib.suppress(TimeoutError):
                process.wait(KILL_TIMEOUT)
        for pid in self.pids():  # anything that left its session (a daemon)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


class Network:
    """Hosts on one bridge. ``hosts``: names (addresses .1, .2, ... in order) or a mapping
    of name to an address in :data:`SUBNET_PREFIX`."""

    def __init__(self, hosts: Sequence[str] | Mapping[str, str]) -> None:
        if not isinstance(hosts, Mapping):
            hosts = {name: f"{SUBNET_PREFIX}{i + 1}" for i, name in enumerate(hosts)}
        for name, address in hosts.items():
            if not _NAME.fullmatch(name):
                raise ValueError(f"host name {name!r}: a lower-case letter, then letters/digits")
            if not address.startswith(SUBNET_PREFIX):
                raise ValueError(f"{name}: {address} is outside the test subnet {SUBNET_PREFIX}0")
        self.prefix = f"{NAME_PREFIX}{os.getpid()}-{secrets.token_hex(3)}"
        self.switch = f"{self.prefix}-sw"
        self.hosts = {
            name: Host(self, name, i, address) for i, (name, address) in enumerate(hosts.items())
        }
        self._made: list[str] = []  # namespaces created so far, deleted in reverse

    def __getitem__(self, name: str) -> Host:
        return self.hosts[name]

    def __enter__(self) -> Network:
        remove_stale()
        try:
            self._add_namespace(self.switch, first=True)
            ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
            ip("-n", self.switch, "link", "set", "br0", "up")
            for host in self.hosts.values():
                self._add_host(host)
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _add_namespace(self, name: str, *, first: bool = False) -> None:
        try:
            ip("netns", "add", name)
        except FileNotFoundError as exc:
            raise NetnsUnavailable("the `ip` command (iproute2) is not installed") from exc
        except RuntimeError as exc:
            if first:  # the kernel's (or the permissions') refusal, not a bug of ours
                raise NetnsUnavailable(str(exc)) from exc
            raise
        self._made.append(name)
        ip("-n", name, "link", "set", "lo", "up")

    def _add_host(self, host: Host) -> None:
        self._add_namespace(host.netns)
        # Made in the switch namespace, its peer moved into the host as it is created:
        # names only need to be unique inside each namespace.
        ip("-n", self.switch, "link", "add", host.port, "type", "veth",
           "peer", "name", "eth0", "netns", host.netns)  # fmt: skip
        ip("-n", self.switch, "link", "set", host.port, "master", "br0")
        ip("-n", self.switch, "link", "set", host.port, "up")
        ip("-n", host.netns, "addr", "add", f"{host.address}/{PREFIX_LENGTH}", "dev", "eth0")
        ip("-n", host.netns, "link", "set", "eth0", "up")

    def close(self) -> None:
        """Kill every process in the hosts, then delete every namespace (idempotent)."""
        for host in self.hosts.values():
            if host.netns in self._made:
                host.kill_all()
        errors = []
        for name in reversed(self._made):
            try:
                ip("netns", "delete", name)
            except RuntimeError as exc:
                errors.append(str(exc))
        self._made.clear()
        if errors:
            raise RuntimeError("could not delete test namespaces: " + "; ".join(errors))


@contextlib.contextmanager
def network_or_skip(hosts: Sequence[str] | Mapping[str, str]) -> Iterator[Network]:
    """:class:`Network`, or skip the test with the reason this machine refuses namespaces."""
    try:
        network = Network(hosts).__enter__()
    except NetnsUnavailable as exc:
        pytest.skip(f"cannot create network namespaces here: {exc}")
    try:
        yield network
    finally:
        network.close()


def remove_stale() -> None:
    """Delete namespaces a killed test run left behind: ours, whose creator pid is gone."""
    try:
        names = os.listdir(NETNS_RUN_DIR)
    except OSError:
        return
    for name in names:
        match = re.fullmatch(re.escape(NAME_PREFIX) + r"(\d+)-[0-9a-f]+-\w+", name)
        if match is None or _alive(int(match.group(1))):
            continue
        for pid in _netns_pids(name):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        subprocess.run(["ip", "netns", "delete", name], capture_output=True, timeout=IP_TIMEOUT)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _netns_pids(name: str) -> list[int]:
    done = subprocess.run(
        ["ip", "netns", "pids", name], capture_output=True, text=True, timeout=IP_TIMEOUT
    )
    return [int(pid) for pid in done.stdout.split()]


def _setns(fd: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        raise OSError(ctypes.get_errno(), f"setns: {os.strerror(ctypes.get_errno())}")
