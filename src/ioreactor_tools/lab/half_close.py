"""Lab ``half-close``: ``shutdown(SHUT_WR)`` versus ``close()`` (优雅关闭).

Course: 提高篇_上 "优雅关闭". TCP is two byte streams. ``shutdown(SHUT_WR)`` ends only
ours (a FIN goes out) and we keep reading the peer's answer; ``close()`` ends both, so
data the peer sends afterwards meets a socket that no longer exists and is answered with
RST, and the peer's next write fails (EPIPE, or SIGPIPE in C). The peer cannot tell the
two apart from its reads alone: both arrive as EOF. ``close`` also only drops a
reference: with the descriptor duplicated no FIN is sent, while ``shutdown`` always
sends one.
"""

from __future__ import annotations

import errno
import os
import socket
import threading
from dataclasses import dataclass

from ioreactor_tools.lab.loopback import ports, tcp_pair, wait_for, wait_for_error
from ioreactor_tools.lab.report import Finding, LabReport
from ioreactor_tools.lab.tcp_states import state_of

REQUEST = b"q" * 4096
CHUNK = b"r" * 65536


def _read_to_eof(sock: socket.socket) -> int:
    total = 0
    while data := sock.recv(65536):
        total += len(data)
    return total


@dataclass(frozen=True, slots=True)
class ShutdownResult:
    """The client sent its request, shut down writing, then read the whole answer."""

    server_saw_eof_after: int  # request bytes read before EOF
    client_state: str | None  # while half-closed
    server_state: str | None
    client_write_error: str | None  # writing after SHUT_WR
    answer_sent: int
    answer_received: int


def half_close(answer_bytes: int) -> ShutdownResult:
    client, server = tcp_pair()
    c_port, s_port = ports(client)
    with client, server:
        client.settimeout(10)
        server.settimeout(10)
        client.sendall(REQUEST)
        client.shutdown(socket.SHUT_WR)
        got = _read_to_eof(server)
        wait_for(lambda: state_of(c_port, s_port) == "FIN_WAIT2", 1.0)
        client_state, server_state = state_of(c_port, s_port), state_of(s_port, c_port)
        try:
            client.send(b"late")
            write_error = None
        except OSError as exc:
            write_error = errno.errorcode.get(exc.errno or 0)

        def answer() -> None:  # larger than the socket buffers: it flows while half-closed
            server.sendall(CHUNK * (answer_bytes // len(CHUNK)))
            server.shutdown(socket.SHUT_WR)

        sender = threading.Thread(target=answer)
        sender.start()
        received = _read_to_eof(client)
        sender.join()
    return ShutdownResult(
        got,
        client_state,
        server_state,
        write_error,
        answer_bytes // len(CHUNK) * len(CHUNK),
        received,
    )


@dataclass(frozen=True, slots=True)
class CloseResult:
    """The client sent its request and closed; the server answered anyway."""

    server_saw_eof_after: int
    writes_accepted: int  # server writes the kernel took before reporting the RST
    write_error: str | None


def full_close(max_writes: int = 10) -> CloseResult:
    client, server = tcp_pair()
    with server:
        server.settimeout(10)
        client.sendall(REQUEST)
        client.close()
        got = _read_to_eof(server)
        accepted = 0
        error = None
        for _ in range(max_writes):
            try:
                server.send(CHUNK[:1024])
            except OSError as exc:
                error = errno.errorcode.get(exc.errno or 0)
                break
            accepted += 1
            wait_for_error(server, 0.5)  # the RST comes back asynchronously
    return CloseResult(got, accepted, error)


@dataclass(frozen=True, slots=True)
class RefCountResult:
    """A duplicated descriptor: does close / shutdown on one copy reach the peer?"""

    eof_after_close_of_one_copy: bool
    eof_after_shutdown: bool


def reference_count(wait_s: float = 0.2) -> RefCountResult:
    client, server = tcp_pair()
    copy = os.dup(client.fileno())
    with server:
        server.settimeout(wait_s)
        client.close()
        try:
            eof_on_close = server.recv(1) == b""
        except TimeoutError:
            eof_on_close = False
        with socket.socket(fileno=copy) as dup:
            dup.shutdown(socket.SHUT_WR)
            eof_on_shutdown = server.recv(1) == b""
    return RefCountResult(eof_on_close, eof_on_shutdown)


@dataclass(frozen=True, slots=True)
class HalfCloseResult:
    shutdown: ShutdownResult
    close: CloseResult
    refcount: RefCountResult


def run(answer_bytes: int = 4 << 20) -> HalfCloseResult:
    return HalfCloseResult(half_close(answer_bytes), full_close(), reference_count())


def report(result: HalfCloseResult) -> LabReport:
    s, c, r = result.shutdown, result.close, result.refcount
    rep = LabReport("half-close: shutdown(SHUT_WR) vs close()", "提高篇_上 优雅关闭")
    rep.findings.append(
        Finding(
            "client: send request, shutdown(SHUT_WR)",
            f"server read {s.server_saw_eof_after} bytes then EOF; states: client "
            f"{s.client_state}, server {s.server_state}",
            "SHUT_WR sends FIN after the queued data; the connection is half-closed (半关闭)",
            s.server_saw_eof_after == len(REQUEST)
            and s.client_state == "FIN_WAIT2"
            and s.server_state == "CLOSE_WAIT",
        )
    )
    rep.findings.append(
        Finding(
            "server answers the half-closed client",
            f"client received {s.answer_received:,} of {s.answer_sent:,} bytes after its "
            "shutdown, then EOF",
            "the other direction keeps flowing until the peer closes it too",
            s.answer_received == s.answer_sent,
        )
    )
    rep.findings.append(
        Finding(
            "client writes after SHUT_WR",
            s.client_write_error or "accepted",
            "later writes on the shut-down direction fail (EPIPE)",
            s.client_write_error == "EPIPE",
        )
    )
    rep.findings.append(
        Finding(
            "client: send request, close()",
            f"server read {c.server_saw_eof_after} bytes then EOF, same as after SHUT_WR",
            "the peer sees only a FIN: it cannot tell close from shutdown by reading",
            c.server_saw_eof_after == len(REQUEST),
        )
    )
    rep.findings.append(
        Finding(
            "server answers the closed client",
            f"{c.writes_accepted} write(s) accepted, then {c.write_error or 'no error'}",
            "the first write reaches a closed socket, which answers RST; the next write "
            "fails (EPIPE, SIGPIPE kills a C program that ignores it)",
            c.writes_accepted >= 1 and c.write_error in ("EPIPE", "ECONNRESET"),
        )
    )
    rep.findings.append(
        Finding(
            "close() one of two descriptors of a socket",
            "peer saw EOF" if r.eof_after_close_of_one_copy else "peer saw nothing (no FIN)",
            "close only drops a reference (引用计数); the FIN waits for the last one",
            not r.eof_after_close_of_one_copy,
        )
    )
    rep.findings.append(
        Finding(
            "shutdown(SHUT_WR) on the remaining descriptor",
            "peer saw EOF" if r.eof_after_shutdown else "peer saw nothing",
            "shutdown acts on the connection whatever the reference count",
            r.eof_after_shutdown,
        )
    )
    return rep
