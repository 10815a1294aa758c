"""The supervisor: restarts, exit causes, back-off, give-up, signal forwarding."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from multicore_harness import AppServer, LineClient

from ioreactor.multicore import FORCED_EXIT, RestartBackoff, describe_exit
from ioreactor.testing import wait_until
from support.chatter import Chatter

#: Liveness bound on a restart; the real figure (tens of ms) is printed and in the log.
RESTART_BOUND = 5.0


def chatter(client: LineClient) -> Chatter:
    """Keeps ``client`` exchanging lines, each checked, until stopped."""

    def exchange(n: int) -> None:
        line = b"chat %d" % n
        if client.request(line) != line:
            raise AssertionError("wrong reply")

    return Chatter(exchange)


@pytest.mark.parametrize("dispatch", ["reuseport", "fdpass"])
def test_killed_worker_is_restarted_fast_and_other_workers_see_no_error(
    tmp_path: Path, dispatch: str
) -> None:
    server = AppServer(tmp_path, "--workers", "2", "--dispatch", dispatch).start()
    chatters: list[Chatter] = []
    try:
        victim_index, victim = sorted(server.worker_pids().items())[0]
        clients = [server.connect() for _ in range(10)]
        while all(c.pid() == victim for c in clients) and len(clients) < 64:
            clients.append(server.connect())  # reuseport hashes: 10 may all land on one
        survivors = [c for c in clients if c.pid() != victim]
        assert survivors, "some connections are on the other worker"
        chatters = [chatter(c) for c in survivors]
        for busy in chatters:
            busy.start()
        assert wait_until(lambda: all(c.exchanges > 10 for c in chatters))
        killed_at = time.monotonic()
        os.kill(victim, signal.SIGKILL)
        server.wait_for(rf"worker {victim_index} restarted: pid \d+ ready")
        restart = time.monotonic() - killed_at
        print(f"\n{dispatch}: restarted in {restart * 1000:.0f} ms (seen from the test)")
        assert restart < RESTART_BOUND
        assert f"worker {victim_index} (pid {victim}) killed by SIGKILL" in server.log()
        before = [c.exchanges for c in chatters]
        progress = list(zip(chatters, before, strict=True))
        assert wait_until(lambda: all(c.exchanges > b + 10 for c, b in progress))
        for busy in chatters:
            busy.stop()
            assert busy.error is None, f"a connection on the other worker failed: {busy.error}"
        newcomer = server.worker_pids()[victim_index]
        assert newcomer != victim

        def reached_newcomer() -> bool:
            client = server.connect()
            try:
                return client.pid() == newcomer
            finally:
                client.close()

        assert wait_until(reached_newcomer), "new connections reach the restarted worker"
        server.signal(signal.SIGTERM)
        assert server.wait() == 0
    finally:
        for busy in chatters:
            busy.done.set()
        server.stop()


def test_exit_cause_is_reported_and_the_worker_comes_back(tmp_path: Path) -> None:
    server = AppServer(tmp_path, "--workers", "1").start()
    try:
        (old,) = server.worker_pids().values()
        client = server.connect()
        client.send(b"exit 3")
        server.wait_for(rf"worker 0 \(pid {old}\) exited with code 3 after [\d.]+ s; restarting")
        server.wait_for(r"worker 0 restarted: pid \d+ ready [\d.]+ ms after")
        client.close()
        assert server.connect().pid() not in (old, server.pid)
        server.signal(signal.SIGTERM)
        assert server.wait() == 0
        assert "exited with code 0" in server.log()
    finally:
        server.stop()


def test_a_worker_that_cannot_start_is_retried_with_back_off_then_given_up(
    tmp_path: Path,
) -> None:
    server = AppServer(tmp_path, "--workers", "1", "--fail-start")
    server.launch()
    try:
        assert server.wait() == 1
        log = server.log()
        assert log.count("cannot start") >= 5
        assert "restarting now" in log and "restarting in 0.1 s" in log
        assert "restarting in 0.2 s" in log
        assert "before it was ready, 5 times in a row; giving up" in log
    finally:
        server.stop()


@pytest.mark.parametrize("workers", ["0", "1"])
def test_second_sigint_forces_an_immediate_stop(tmp_path: Path, workers: str) -> None:
    """Output that cannot drain keeps a graceful stop waiting; a second SIGINT ends it."""
    server = AppServer(tmp_path, "--workers", workers, "--shutdown-timeout", "60").start()
    try:
        client = server.connect()
        client.send(b"big")  # 8 MiB the client never reads
        assert client.sock.recv(1) == b"x"
        server.signal(signal.SIGINT)
        server.wait_for(r"shutting down \(timeout 60.0 s\)")
        time.sleep(0.2)
        assert server.proc.poll() is None, "still draining gracefully"
        server.signal(signal.SIGINT)
        assert server.wait() == FORCED_EXIT
        assert "forcing an immediate stop" in server.log()
        client.close()
    finally:
        server.stop()


def test_graceful_timeout_force_closes_what_is_left_and_exits_zero(tmp_path: Path) -> None:
    server = AppServer(tmp_path, "--workers", "1", "--shutdown-timeout", "0.3").start()
    try:
        client = server.connect()
        client.send(b"big")
        assert client.sock.recv(1) == b"x"
        server.signal(signal.SIGTERM)
        assert server.wait() == 0
        assert "shutdown timeout; force-closing 1 connection(s)" in server.log()
        client.close()
    finally:
        server.stop()


def test_restart_backoff_restarts_at_once_then_doubles_then_resets() -> None:
    backoff = RestartBackoff(initial=0.1, maximum=1.0, healthy_uptime=5.0)
    assert backoff.next_delay(100.0) == 0.0  # died after a healthy run: at once
    assert [backoff.next_delay(0.5) for _ in range(6)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    assert backoff.next_delay(5.0) == 0.0  # healthy again: the count starts over
    assert backoff.next_delay(0.0) == 0.1


def test_exit_causes_in_words() -> None:
    assert describe_exit(0) == "exited with code 0"
    assert describe_exit(3) == "exited with code 3"
    assert describe_exit(-signal.SIGKILL) == "killed by SIGKILL"
    assert describe_exit(-signal.SIGSEGV) == "killed by SIGSEGV"
