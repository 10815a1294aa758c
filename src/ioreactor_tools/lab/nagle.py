"""Lab ``nagle``: small writes, Nagle's algorithm, delayed ACK, TCP_NODELAY and writev.

Course: 提高篇_下 "小数据包". A request written as two small writes (header, then body)
and then waited on is the worst case: Nagle holds the body while the header is
unacknowledged, and the receiver, which cannot answer before it has the body, delays its
ACK (about 40 ms on Linux). TCP_NODELAY sends the body at once; gathering both parts into
one ``writev``/``sendmsg`` sends one segment and needs no option at all.
"""

from __future__ import annotations

import socket
import statistics
import threading
import time
from dataclasses import dataclass

from ioreactor_tools.lab.loopback import tcp_pair
from ioreactor_tools.lab.report import Finding, LabReport, Table

HEADER = b"h" * 100
BODY = b"b" * 100
RESPONSE = b"r" * 50
PATTERNS = {
    "write-write-read, Nagle on": (False, False),
    "write-write-read, TCP_NODELAY": (True, False),
    "one sendmsg (writev), Nagle on": (False, True),
}
DELAYED_ACK_MS = 40  # TCP_DELACK_MIN


@dataclass(frozen=True, slots=True)
class Latency:
    """Request round trips of one write pattern, in milliseconds."""

    pattern: str
    median_ms: float
    p90_ms: float
    max_ms: float


def _responder(conn: socket.socket) -> None:
    """Answer each complete request (header + body) with one small response."""
    need = len(HEADER) + len(BODY)
    pending = 0
    while data := conn.recv(4096):
        pending += len(data)
        while pending >= need:
            pending -= need
            conn.sendall(RESPONSE)


def measure(nodelay: bool, gather: bool, rounds: int) -> list[float]:
    """Round-trip times in ms for ``rounds`` requests over one connection."""
    client, server = tcp_pair()
    responder = threading.Thread(target=_responder, args=(server,))
    responder.start()
    times = []
    with client, server:
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, int(nodelay))
        for _ in range(rounds):
            start = time.perf_counter()
            if gather:
                client.sendmsg([HEADER, BODY])
            else:
                client.send(HEADER)
                client.send(BODY)
            got = 0
            while got < len(RESPONSE):
                got += len(client.recv(len(RESPONSE) - got))
            times.append((time.perf_counter() - start) * 1000)
        client.shutdown(socket.SHUT_WR)
        responder.join()
    return times


def run(rounds: int = 20) -> list[Latency]:
    results = []
    for name, (nodelay, gather) in PATTERNS.items():
        times = sorted(measure(nodelay, gather, rounds))
        results.append(
            Latency(name, statistics.median(times), times[int(0.9 * (len(times) - 1))], times[-1])
        )
    return results


def report(results: list[Latency]) -> LabReport:
    by_name = {r.pattern: r for r in results}
    nagle = by_name["write-write-read, Nagle on"]
    nodelay = by_name["write-write-read, TCP_NODELAY"]
    gathered = by_name["one sendmsg (writev), Nagle on"]
    rep = LabReport("Nagle, delayed ACK, TCP_NODELAY, writev", "提高篇_下 小数据包")
    rep.findings.append(
        Finding(
            "write header, write body, read response (Nagle on)",
            f"median {nagle.median_ms:.2f} ms per request",
            f"Nagle waits for the ACK of the header, the peer delays it (~{DELAYED_ACK_MS} ms)",
            nagle.median_ms >= DELAYED_ACK_MS / 2,
        )
    )
    rep.findings.append(
        Finding(
            "same with TCP_NODELAY",
            f"median {nodelay.median_ms:.3f} ms ({nagle.median_ms / nodelay.median_ms:,.0f}x "
            "faster)",
            "TCP_NODELAY turns Nagle off: the body leaves at once",
            nodelay.median_ms * 10 < nagle.median_ms,
        )
    )
    rep.findings.append(
        Finding(
            "header and body in one sendmsg (writev), Nagle on",
            f"median {gathered.median_ms:.3f} ms ({nagle.median_ms / gathered.median_ms:,.0f}x "
            "faster)",
            "合并写操作: one write of both parts avoids the stall without touching Nagle",
            gathered.median_ms * 10 < nagle.median_ms,
        )
    )
    rep.tables.append(
        Table(
            "request round trip (ms)",
            ("pattern", "median", "p90", "max"),
            tuple(
                (r.pattern, f"{r.median_ms:.3f}", f"{r.p90_ms:.3f}", f"{r.max_ms:.3f}")
                for r in results
            ),
        )
    )
    rep.notes.append(
        "The first request or two are fast even with Nagle on: Linux acknowledges at once "
        "(quick-ACK mode) until the connection looks interactive."
    )
    return rep
