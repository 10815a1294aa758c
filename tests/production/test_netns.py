"""The test network the cluster tests stand on (:mod:`support.netns`): hosts that reach
each other and nothing else, a link that can be cut and restored, and a teardown that
leaves no namespace and no process behind, even when the test is interrupted.
"""

from __future__ import annotations

import errno
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from support.netns import NAME_PREFIX, NETNS_RUN_DIR, Network, network_or_skip, remove_stale

HOSTS = {"a": "10.200.0.1", "b": "10.200.0.2"}
PORT = 9000


def our_namespaces(network: Network) -> set[str]:
    return {name for name in os.listdir(NETNS_RUN_DIR) if name.startswith(network.prefix)}


def listen_in(network: Network, host: str) -> socket.socket:
    with network[host].inside():
        server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("0.0.0.0", PORT))
    server.listen()
    return server


def test_hosts_reach_each_other_and_nothing_else() -> None:
    with network_or_skip(HOSTS) as net, listen_in(net, "b") as server:
        with net["a"].connect(HOSTS["b"], PORT, timeout=5) as client:
            peer, (address, _) = server.accept()
            with peer:
                assert address == HOSTS["a"]
                client.sendall(b"ping")
                assert peer.recv(4) == b"ping"
        # No route off the bridge: the subnet is all a host knows.
        with pytest.raises(OSError) as refused:
            net["a"].connect("192.0.2.1", 80, timeout=2)
        assert refused.value.errno == errno.ENETUNREACH
        assert "10.200.0.1/24" in net["a"].run(["ip", "-o", "addr", "show", "eth0"]).stdout


def test_a_host_whose_link_is_down_goes_silent_until_it_is_up_again() -> None:
    with network_or_skip(HOSTS) as net, listen_in(net, "b") as server:
        client = net["a"].connect(HOSTS["b"], PORT, timeout=5)
        peer, _ = server.accept()
        with client, peer:
            net["b"].link_down()
            client.sendall(b"lost")  # no FIN, no RST, no answer: a dead peer
            client.settimeout(0.5)
            with pytest.raises(TimeoutError):
                client.recv(1)
            with pytest.raises(TimeoutError):
                net["a"].connect(HOSTS["b"], PORT, timeout=0.5)
            net["b"].link_up()
            # The kernel retransmits what was lost; the stream carries on.
            peer.settimeout(5)
            assert peer.recv(4) == b"lost"
            peer.sendall(b"back")
            client.settimeout(5)
            assert client.recv(4) == b"back"


def test_teardown_kills_every_process_and_deletes_every_namespace(tmp_path: Path) -> None:
    with network_or_skip(HOSTS) as probe:
        pass  # skips here where namespaces cannot be made
    assert not our_namespaces(probe)
    net = Network(HOSTS)
    with pytest.raises(KeyboardInterrupt), net:
        sleeper = net["a"].spawn([sys.executable, "-c", "import time; time.sleep(60)"],
                                 tmp_path / "sleep.log")  # fmt: skip
        # A process that leaves its session is still found: it is in the namespace.
        daemon = (
            net["b"].run(["sh", "-c", "setsid sleep 60 >/dev/null 2>&1 & echo $!"]).stdout.strip()
        )
        assert len(our_namespaces(net)) == 3  # the switch and two hosts
        raise KeyboardInterrupt
    assert not our_namespaces(net)
    assert sleeper.popen.returncode is not None
    deadline = time.monotonic() + 5
    while Path(f"/proc/{daemon}").exists() and _state(int(daemon)) != "Z":
        assert time.monotonic() < deadline, f"pid {daemon} survived the teardown"
        time.sleep(0.02)


def test_two_networks_at_once_do_not_collide() -> None:
    with network_or_skip(HOSTS) as one, Network(HOSTS) as two:
        assert one.prefix != two.prefix
        with listen_in(one, "b") as server:
            one["a"].connect(HOSTS["b"], PORT, timeout=5).close()
            server.accept()[0].close()
            # The same address in the other network has no listener: refused, not reached.
            with pytest.raises(ConnectionRefusedError):
                two["a"].connect(HOSTS["b"], PORT, timeout=5)


def test_namespaces_of_a_dead_run_are_removed() -> None:
    with network_or_skip(HOSTS):
        pass
    gone = subprocess.Popen(["true"])
    gone.wait()
    stale = f"{NAME_PREFIX}{gone.pid}-abcdef-sw"
    subprocess.run(["ip", "netns", "add", stale], check=True, timeout=10)
    try:
        remove_stale()
        assert stale not in os.listdir(NETNS_RUN_DIR)
    finally:
        subprocess.run(["ip", "netns", "delete", stale], capture_output=True, timeout=10)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "gone"
