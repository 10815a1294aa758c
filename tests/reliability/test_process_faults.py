"""Server processes that die or are told to stop while HTTP load runs: ``ioreactor serve``.

Worker killed: with ``--workers 2`` one worker gets SIGKILL while keep-alive clients
talk to both. Its own connections are lost (they fail: the test checks they did, which
proves they were on it), the supervisor restarts it, new connections reach the new
process, and the connections on the other worker never see an error.

SIGTERM: pipelining clients keep requests in flight while the supervisor gets SIGTERM.
The access log says which requests each worker took in (one line per response it
produced); each connection must have received exactly those responses, in order, and
the server must exit 0. Requests the server had not taken in when it said
``Connection: close`` (or closed an idle connection) are the client's to retry
(RFC 9112 section 9.3.1); they are never half-answered.
"""

from __future__ import annotations

import collections
import os
import re
import signal
import socket
import threading
from pathlib import Path

from reliability_support import TIMEOUT, serve, serving_pid

from ioreactor.testing import wait_until
from support.chatter import Chatter
from support.http import GET, ResponseReader

HELLO = b"Hello, World!"


def keep_alive_chatter(sock: socket.socket) -> Chatter:
    """GET / over one keep-alive connection, again and again, each answer checked."""
    parsed = ResponseReader()

    def exchange(n: int) -> None:
        sock.sendall(GET)
        while len(parsed) == n:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed by the server")
            parsed.feed(chunk)
        if parsed[-1].status != 200 or parsed[-1].body != HELLO:
            raise AssertionError(f"bad answer {parsed[-1].status}")

    return Chatter(exchange)


def owner(sock: socket.socket, pids: list[int]) -> int:
    """The worker holding the server end of ``sock`` (it may still be accepting it)."""
    found: list[int] = []

    def look() -> bool:
        pid = serving_pid(sock, pids)
        if pid is not None:
            found.append(pid)
        return bool(found)

    assert wait_until(look), "no worker holds the connection"
    return found[0]


def test_worker_killed_under_load(tmp_path: Path) -> None:
    with serve(tmp_path, "--workers", "2") as server:
        workers = server.worker_pids()
        victim_index, victim = sorted(workers.items())[0]
        socks: list[socket.socket] = []
        where: dict[int, list[socket.socket]] = collections.defaultdict(list)
        while len(socks) < 64 and not all(len(where[p]) >= 3 for p in workers.values()):
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT)
            socks.append(sock)
            where[owner(sock, list(workers.values()))].append(sock)
        assert all(where[p] for p in workers.values()), "reuseport gave one worker everything"
        chatters = {sock: keep_alive_chatter(sock) for sock in socks}
        try:
            for chatter in chatters.values():
                chatter.start()
            assert wait_until(lambda: all(c.exchanges > 20 for c in chatters.values()))
            os.kill(victim, signal.SIGKILL)
            server.wait_for(rf"worker {victim_index} restarted: pid (\d+) ready")
            survivors = [chatters[s] for p, ss in where.items() if p != victim for s in ss]
            lost = [chatters[s] for s in where[victim]]
            marks = [(c, c.exchanges) for c in survivors]
            assert wait_until(lambda: all(c.exchanges > m + 20 for c, m in marks))
            assert wait_until(lambda: all(c.error is not None for c in lost))
            print(f"\n{len(lost)} connections died with the worker, {len(survivors)} lived on")
            for chatter in survivors:
                assert chatter.error is None, f"a connection on the other worker: {chatter.error}"
            assert f"worker {victim_index} (pid {victim}) killed by SIGKILL" in server.log()
            newcomer = server.worker_pids()[victim_index]
            assert newcomer != victim
            survivor_pids = [p for p in workers.values() if p != victim]

            def reaches_newcomer() -> bool:
                with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as s:
                    s.sendall(GET)
                    answered = b" 200 " in s.recv(4096)
                    return answered and owner(s, [newcomer, *survivor_pids]) == newcomer

            assert wait_until(reaches_newcomer), "no new connection reached the new worker"
        finally:
            for chatter in chatters.values():
                chatter.stop()
            for sock in socks:
                sock.close()
        server.signal(signal.SIGTERM)
        assert server.wait() == 0


# -- SIGTERM under load ---------------------------------------------------------------------

PIPELINERS = 12
#: Requests each client keeps in flight.
WINDOW = 4


def numbered(n: int) -> bytes:
    body = b"%d" % n
    return b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)


class Pipeliner(threading.Thread):
    """Keeps WINDOW numbered POST /echo requests in flight until the server closes."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        self.port: int = self.sock.getsockname()[1]
        self.parsed = ResponseReader()
        self.sent = 0
        self.out_of_order: bytes | None = None
        self.ended = ""

    def run(self) -> None:
        sock = self.sock
        parsed = self.parsed
        try:
            sock.sendall(b"".join(numbered(i) for i in range(WINDOW)))
            self.sent = WINDOW
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    self.ended = "eof"
                    return
                before = len(parsed)
                parsed.feed(chunk)
                for i in range(before, len(parsed)):
                    if parsed[i].body != b"%d" % i:
                        self.out_of_order = parsed[i].body
                        return
                more = len(parsed) - before
                if more and parsed[-1].closes:
                    continue  # the server said goodbye: send nothing more, read to the end
                if more:
                    sock.sendall(b"".join(numbered(self.sent + i) for i in range(more)))
                    self.sent += more
        except OSError as exc:
            self.ended = type(exc).__name__

    @property
    def answered(self) -> int:
        return len(self.parsed)


def test_sigterm_under_load_answers_what_was_taken_in_then_exits_zero(tmp_path: Path) -> None:
    with serve(tmp_path, "--workers", "2", "--access-log") as server:
        clients = [Pipeliner(server.port) for _ in range(PIPELINERS)]
        for client in clients:
            client.start()
        try:
            assert wait_until(lambda: all(c.answered > 50 for c in clients))
            server.signal(signal.SIGTERM)
            for client in clients:
                client.join(TIMEOUT)
                assert not client.is_alive(), "a connection was never closed"
            assert server.wait() == 0
        finally:
            for client in clients:
                client.sock.close()
        taken_in = collections.Counter(
            int(port)
            for port in re.findall(r"127\.0\.0\.1:(\d+) - - \[[^]]*\] \"POST ", server.log())
        )
        for client in clients:
            assert client.out_of_order is None, f"answer out of order: {client.out_of_order!r}"
            assert client.ended in ("eof", "ConnectionResetError"), client.ended
            assert taken_in[client.port] == client.answered, (
                f"port {client.port}: the server produced {taken_in[client.port]} responses, "
                f"the client got {client.answered}"
            )
            assert client.sent - client.answered <= WINDOW
        total = sum(c.answered for c in clients)
        print(f"\n{total} requests answered; every one the server took in reached its client")
