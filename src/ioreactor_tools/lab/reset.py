"""Lab ``reset``: the ways "TCP is reliable" stops at the socket API (TCP并非总是"可靠").

Course: 提高篇_下 "TCP 并非总是可靠". A successful write means the bytes reached our
kernel, nothing more. Writing to a peer that closed gets an RST back and the next write
fails with EPIPE, which raises SIGPIPE and kills a C program that did not ignore it
(Python ignores SIGPIPE at start-up, so it sees BrokenPipeError). Reading a connection
that was reset fails with ECONNRESET. An abortive close (SO_LINGER {1, 0}) sends RST
instead of FIN and throws away what was still queued to send.
"""

from __future__ import annotations

import errno
import signal
import socket
import struct
import subprocess
import sys
from dataclasses import dataclass

from ioreactor_tools.lab.loopback import tcp_pair, wait_for_error
from ioreactor_tools.lab.report import Finding, LabReport

LINGER_ZERO = struct.pack("ii", 1, 0)
RST_WAIT_S = 1.0

# A child that restores SIGPIPE's default action, as a C program has it, then writes
# twice to a socket whose peer has closed.
_SIGPIPE_CHILD = """
import select, signal, socket, sys
signal.signal(signal.SIGPIPE, signal.SIG_DFL)
sock = socket.socket(fileno=int(sys.argv[1]))
sock.send(b"first")
poller = select.poll()
poller.register(sock, 0)
poller.poll(1000)  # until the RST arrives
sock.send(b"second")
"""


def _errname(exc: OSError) -> str:
    return errno.errorcode.get(exc.errno or 0, str(exc))


def _try_send(sock: socket.socket, data: bytes) -> str:
    try:
        return f"{sock.send(data)} bytes"
    except OSError as exc:
        return _errname(exc)


def _try_recv(sock: socket.socket) -> str:
    try:
        data = sock.recv(65536)
    except OSError as exc:
        return _errname(exc)
    return "EOF (0)" if not data else f"{len(data)} bytes"


def write_after_peer_closed(writes: int = 3) -> list[str]:
    """The peer closes; we write ``writes`` times, letting each RST arrive."""
    client, server = tcp_pair()
    with server:
        client.close()
        results = []
        for _ in range(writes):
            results.append(_try_send(server, b"data"))
            wait_for_error(server, RST_WAIT_S)
    return results


def sigpipe_kills_c_like_process() -> int:
    """Exit status of a child with SIGPIPE's default action writing to a closed peer
    (negative: killed by that signal)."""
    client, server = tcp_pair()
    with server:
        client.close()
        child = subprocess.run(
            [sys.executable, "-c", _SIGPIPE_CHILD, str(server.fileno())],
            pass_fds=[server.fileno()],
            timeout=30,
            check=False,
        )
    return child.returncode


def write_then_read() -> tuple[str, str]:
    """The peer closes; we write once (provoking an RST) and then read."""
    client, server = tcp_pair()
    with server:
        client.close()
        written = _try_send(server, b"data")
        wait_for_error(server, RST_WAIT_S)
        return written, _try_recv(server)


def read_after_reset() -> tuple[str, str, str]:
    """The peer aborts (SO_LINGER {1, 0}); we read, read again, then write."""
    client, server = tcp_pair()
    with server:
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_ZERO)
        client.close()
        wait_for_error(server, RST_WAIT_S)
        return _try_recv(server), _try_recv(server), _try_send(server, b"data")


def bytes_lost_by_abort(linger_zero: bool) -> tuple[int, int, str]:
    """The sender queues as much as the kernel takes while the receiver is not reading,
    then closes. Returns (bytes accepted by send, bytes the receiver got, how it ended)."""
    receiver, sender = tcp_pair(rcvbuf=65536)
    with receiver:
        sender.setblocking(False)
        accepted = 0
        try:
            while True:
                accepted += sender.send(b"x" * 65536)
        except BlockingIOError:
            pass  # the send buffer and the receiver's window are full
        if linger_zero:
            sender.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_ZERO)
        sender.close()
        receiver.settimeout(10)
        received = 0
        try:
            while data := receiver.recv(1 << 20):
                received += len(data)
            ending = "EOF"
        except OSError as exc:
            ending = _errname(exc)
    return accepted, received, ending


@dataclass(frozen=True, slots=True)
class ResetResult:
    writes_after_close: list[str]
    sigpipe_status: int
    write_then_read: tuple[str, str]
    after_reset: tuple[str, str, str]
    graceful: tuple[int, int, str]
    abortive: tuple[int, int, str]


def run() -> ResetResult:
    return ResetResult(
        writes_after_close=write_after_peer_closed(),
        sigpipe_status=sigpipe_kills_c_like_process(),
        write_then_read=write_then_read(),
        after_reset=read_after_reset(),
        graceful=bytes_lost_by_abort(linger_zero=False),
        abortive=bytes_lost_by_abort(linger_zero=True),
    )


def report(r: ResetResult) -> LabReport:
    rep = LabReport(
        "TCP is not always reliable: RST, EPIPE, SIGPIPE, SO_LINGER 0",
        "提高篇_下 TCP 并非总是可靠; 提高篇_上 SO_LINGER",
    )
    w = r.writes_after_close
    rep.findings.append(
        Finding(
            "peer closed; we write three times",
            ", then ".join(w),
            "the first write succeeds (the bytes only reach our kernel) and draws an RST; "
            "the next ones fail (EPIPE)",
            w[0].endswith("bytes") and all(x == "EPIPE" for x in w[1:]),
        )
    )
    killed_by = -r.sigpipe_status
    rep.findings.append(
        Finding(
            "same, in a process with SIGPIPE's default action (like C)",
            f"killed by {signal.Signals(killed_by).name}"
            if killed_by > 0
            else f"exited with status {r.sigpipe_status}",
            "a write after the RST raises SIGPIPE, which by default ends the process",
            killed_by == signal.SIGPIPE,
        )
    )
    written, read = r.write_then_read
    rep.findings.append(
        Finding(
            "peer closed; we write once, then read",
            f"write: {written}; read: {read}",
            "Linux returns the EOF (0) to the read; macOS returns the RST error",
            read == "EOF (0)",
        )
    )
    first, second, write = r.after_reset
    rep.findings.append(
        Finding(
            "peer aborted with SO_LINGER {1, 0}; we read, read, write",
            f"{first}, then {second}; write: {write}",
            "the RST surfaces once as ECONNRESET (connection reset by peer); the socket is dead",
            first == "ECONNRESET",
        )
    )
    ok_sent, ok_got, ok_end = r.graceful
    ab_sent, ab_got, ab_end = r.abortive
    rep.findings.append(
        Finding(
            "sender queues data, then close()",
            f"send accepted {ok_sent:,} bytes; receiver got {ok_got:,}, then {ok_end}",
            "close sends what is queued, then FIN: nothing is lost",
            ok_got == ok_sent and ok_end == "EOF",
        )
    )
    rep.findings.append(
        Finding(
            "sender queues data, then close() with SO_LINGER {1, 0}",
            f"send accepted {ab_sent:,} bytes; receiver got {ab_got:,}, then {ab_end}",
            "an abortive close discards the send queue (排队的待发送数据将被清空) and resets",
            ab_got < ab_sent and ab_end == "ECONNRESET",
        )
    )
    rep.notes.append(
        "A peer that vanishes without FIN or RST (crash, cable pulled) is a different case: "
        "see `ioreactor lab keepalive`."
    )
    return rep
