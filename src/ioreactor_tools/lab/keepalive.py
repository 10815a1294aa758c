"""Lab ``keepalive``: TCP keepalive probes with short timers, and the application heartbeat.

Course: 提高篇_上 "检测连接状态". An idle connection exchanges nothing, so a peer that died
silently is never noticed. With SO_KEEPALIVE the kernel sends a probe after
TCP_KEEPIDLE seconds of silence, then every TCP_KEEPINTVL seconds; after TCP_KEEPCNT
unanswered probes it declares the connection dead (ETIMEDOUT). Probes are answered by
the peer's *kernel*: a hung (stopped) process still looks alive, which is one reason
applications add their own heartbeat (应用层探活) on top.

The silent peer needs two network namespaces joined by a veth pair (:mod:`.netns`); it
runs in a thread while the loopback part idles, so the lab costs one idle window.
"""

from __future__ import annotations

import errno
import os
import select
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from ioreactor.net.sockopt import KeepAlive, set_keepalive
from ioreactor_tools.children import child_preexec
from ioreactor_tools.lab.loopback import LOOPBACK, tcp_pair
from ioreactor_tools.lab.netns import ADDRESSES, NamespaceUnavailable, VethPair
from ioreactor_tools.lab.report import Finding, LabReport
from ioreactor_tools.lab.tcp_info import TcpInfo, tcp_info

HEARTBEAT_TIMEOUT_S = 1.0
SLACK_S = 3.0  # beyond idle + interval * count before giving up on detection

# A peer process answering each PING with a PONG: the application heartbeat's other end.
_PEER = """
import socket, sys
sock = socket.create_connection((sys.argv[1], int(sys.argv[2])))
while data := sock.recv(64):
    sock.sendall(b"PONG" * data.count(b"PING"))
"""


def detection_time(ka: KeepAlive) -> float:
    """When the kernel gives up on a silent peer: idle, then ``count`` probes apart."""
    return ka.idle + ka.interval * ka.count


@dataclass(frozen=True, slots=True)
class IdleResult:
    """Connections left idle for ``idle_s`` seconds on loopback."""

    idle_s: float
    with_keepalive: TcpInfo
    without_keepalive: TcpInfo
    stopped_peer: TcpInfo  # keepalive on; the peer process is SIGSTOPped
    running_pong_ms: float | None  # heartbeat round trip to the running peer
    stopped_pong_ms: float | None  # None: no PONG within HEARTBEAT_TIMEOUT_S
    pong_after_resume: bool


def _heartbeat(sock: socket.socket, timeout: float) -> float | None:
    """Send PING; the PONG's round trip in ms, or None if none came within ``timeout``."""
    start = time.perf_counter()
    sock.sendall(b"PING")
    sock.settimeout(timeout)
    try:
        reply = sock.recv(4)
    except TimeoutError:
        return None
    return (time.perf_counter() - start) * 1000 if reply == b"PONG" else None


def idle_window(ka: KeepAlive, idle_s: float) -> IdleResult:
    with socket.socket() as listener:
        listener.bind((LOOPBACK, 0))
        listener.listen(1)
        peers: list[subprocess.Popen[bytes]] = []
        try:
            accepted = []
            for _ in range(2):  # one at a time, so each socket's process is known
                peers.append(
                    subprocess.Popen(
                        [sys.executable, "-c", _PEER, LOOPBACK, str(listener.getsockname()[1])],
                        preexec_fn=child_preexec(),
                    )
                )
                accepted.append(listener.accept()[0])
            running, stopped = accepted
            plain, plain_peer = tcp_pair()
            with running, stopped, plain, plain_peer:
                for sock in (running, stopped):
                    set_keepalive(sock, ka)
                    _heartbeat(sock, 5.0)  # both peers are up and answering
                os.kill(peers[1].pid, signal.SIGSTOP)
                time.sleep(idle_s)
                infos = tcp_info(running), tcp_info(plain), tcp_info(stopped)
                running_pong = _heartbeat(running, HEARTBEAT_TIMEOUT_S)
                stopped_pong = _heartbeat(stopped, HEARTBEAT_TIMEOUT_S)
                os.kill(peers[1].pid, signal.SIGCONT)
                stopped.settimeout(5.0)
                resumed = stopped.recv(4) == b"PONG"
        finally:
            for peer in peers:
                peer.kill()
                peer.wait()
    return IdleResult(idle_s, *infos, running_pong, stopped_pong, resumed)


@dataclass(frozen=True, slots=True)
class SilentPeerResult:
    """A peer behind a link taken down: no FIN, no RST, nothing."""

    unavailable: str | None  # why namespaces could not be used
    detected_after_s: float | None
    error: str | None  # the error keepalive reported
    probes_sent: int
    without_keepalive: str  # state of a no-keepalive connection over the same link


def silent_peer(ka: KeepAlive) -> SilentPeerResult:
    try:
        with VethPair("ka") as pair:
            listener = pair.socket(0)
            probed, plain = pair.socket(1), pair.socket(1)
            with listener, probed, plain:
                listener.bind((ADDRESSES[0], 0))
                listener.listen(2)
                set_keepalive(probed, ka)
                probed.connect(listener.getsockname())
                plain.connect(listener.getsockname())
                peers = [listener.accept()[0] for _ in range(2)]
                pair.link_down(0)
                start = time.monotonic()
                poller = select.poll()
                poller.register(probed, 0)  # POLLERR/POLLHUP only
                events = poller.poll((detection_time(ka) + SLACK_S) * 1000)
                elapsed = time.monotonic() - start if events else None
                probes = tcp_info(probed).probes
                code = probed.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                plain_state = tcp_info(plain).state
                for peer in peers:
                    peer.close()
    except NamespaceUnavailable as exc:
        return SilentPeerResult(str(exc), None, None, 0, "")
    return SilentPeerResult(
        None, elapsed, errno.errorcode.get(code) if code else None, probes, plain_state
    )


@dataclass(frozen=True, slots=True)
class KeepAliveResult:
    timers: KeepAlive
    idle: IdleResult
    silent: SilentPeerResult


def run(idle: int = 1, interval: int = 1, count: int = 2) -> KeepAliveResult:
    ka = KeepAlive(idle=idle, interval=interval, count=count)
    with ThreadPoolExecutor(1) as pool:
        silent = pool.submit(silent_peer, ka)
        idle_result = idle_window(ka, detection_time(ka) + 0.5)
        return KeepAliveResult(ka, idle_result, silent.result())


def _default_timers() -> str:
    values = []
    for name in ("tcp_keepalive_time", "tcp_keepalive_intvl", "tcp_keepalive_probes"):
        with open(f"/proc/sys/net/ipv4/{name}") as f:
            values.append(f.read().strip())
    return "/".join(values)


def report(result: KeepAliveResult) -> LabReport:
    ka, i, s = result.timers, result.idle, result.silent
    timers = f"KEEPIDLE={ka.idle}s KEEPINTVL={ka.interval}s KEEPCNT={ka.count}"
    rep = LabReport(f"TCP keepalive ({timers}) vs application heartbeat", "提高篇_上 检测连接状态")
    rep.findings.append(
        Finding(
            f"idle {i.idle_s:.1f} s with keepalive, peer alive",
            _last_ack(i.with_keepalive),
            "probes are sent after KEEPIDLE and answered; the peer is known alive (正常响应)",
            _probes_answered(i.with_keepalive, ka),
        )
    )
    rep.findings.append(
        Finding(
            f"idle {i.idle_s:.1f} s without keepalive",
            _last_ack(i.without_keepalive),
            "an idle connection exchanges nothing: nobody checks the peer",
            i.without_keepalive.last_ack_recv_ms >= (i.idle_s - 0.1) * 1000,
        )
    )
    if s.unavailable is not None:
        rep.findings.append(
            Finding(
                "peer silenced (link down, no FIN/RST)",
                f"not observed: {s.unavailable}",
                "after KEEPCNT unanswered probes the kernel declares the connection dead",
                None,
            )
        )
        rep.notes.append(
            "The silent-peer case needs two network namespaces and a veth pair (root or "
            "CAP_NET_ADMIN + CAP_SYS_ADMIN); without them it could not be staged."
        )
    else:
        detected = f"after {s.detected_after_s:.1f} s" if s.detected_after_s else "never"
        rep.findings.append(
            Finding(
                "peer silenced: its veth end taken down (no FIN, no RST)",
                f"declared dead {detected} with {s.error}; {s.probes_sent} probes unanswered",
                f"after idle + interval x count = {detection_time(ka)} s of silence the kernel "
                "reports the connection dead (连接死亡)",
                s.error == "ETIMEDOUT"
                and s.detected_after_s is not None
                and abs(s.detected_after_s - detection_time(ka)) < 1.5,
            )
        )
        rep.findings.append(
            Finding(
                "same silent link, no keepalive",
                f"still {s.without_keepalive}",
                "without keepalive a silent peer is never noticed on an idle connection",
                s.without_keepalive == "ESTABLISHED",
            )
        )
    rep.findings.append(
        Finding(
            f"peer process SIGSTOPped, keepalive on, idle {i.idle_s:.1f} s",
            _last_ack(i.stopped_peer),
            "keepalive probes are answered by the peer's kernel, not the application",
            _probes_answered(i.stopped_peer, ka),
        )
    )
    rep.findings.append(
        Finding(
            f"application heartbeat, PING -> PONG within {HEARTBEAT_TIMEOUT_S} s",
            f"running peer: {_pong(i.running_pong_ms)}; stopped peer: "
            f"{_pong(i.stopped_pong_ms)}; after SIGCONT: "
            f"{'PONG' if i.pong_after_resume else 'nothing'}",
            "an application-level heartbeat (应用层探活) sees the hung peer TCP calls alive",
            i.running_pong_ms is not None and i.stopped_pong_ms is None and i.pong_after_resume,
        )
    )
    rep.notes.append(
        f"This kernel's defaults (time/intvl/probes): {_default_timers()} s; with them a "
        "dead peer takes over two hours to notice, hence the short timers here."
    )
    return rep


def _last_ack(info: TcpInfo) -> str:
    """What the kernel says of a connection: its state and when it last saw an ACK."""
    return f"{info.state}; last ACK received {info.last_ack_recv_ms} ms ago"


def _probes_answered(info: TcpInfo, ka: KeepAlive) -> bool:
    """The connection is up and an ACK came within one probe interval (plus slack)."""
    return info.state == "ESTABLISHED" and info.last_ack_recv_ms < (ka.interval + 0.5) * 1000


def _pong(ms: float | None) -> str:
    return f"PONG in {ms:.2f} ms" if ms is not None else "no PONG"
