"""Every model serves both protocols to 20 concurrent clients, then stops cleanly.

The threaded and reactor models run in this process; the fork model runs as ``ioreactor model`` in
a child process (it needs the main thread for its SIGCHLD handler), which also lets the
test inspect its children and descriptors through /proc.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from model_clients import HELLO_RESPONSE, SESSIONS

from ioreactor.testing import recv_exactly, wait_until
from ioreactor_tools.models.base import ModelOptions, ServerModel
from ioreactor_tools.models.registry import MODELS, create_model

CLIENTS = 20
PINGS = {"echo": (b"ping", b"ping"), "http": (b"GET / HTTP/1.1\r\nHost: t\r\n\r\n", HELLO_RESPONSE)}


def run_clients(address: tuple[str, int], protocol: str, clients: int = CLIENTS) -> None:
    session = SESSIONS[protocol]
    with ThreadPoolExecutor(clients) as pool:
        for future in [pool.submit(session, address) for _ in range(clients)]:
            future.result(timeout=30)


def listener() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    return sock


class InProcess:
    """A model serving on a background thread."""

    def __init__(self, model: ServerModel) -> None:
        self.model = model
        self.sock = listener()
        self.address: tuple[str, int] = self.sock.getsockname()
        self.thread = threading.Thread(target=model.serve, args=(self.sock,))
        self.thread.start()

    def stop(self) -> None:
        self.model.stop()
        self.thread.join(10)
        self.sock.close()
        assert not self.thread.is_alive(), "serve() must return after stop()"


def require_io_uring() -> None:
    from ioreactor.loop.backends import new_loop
    from ioreactor.loop.uring import UringUnavailable

    try:
        new_loop("uring").close()
    except UringUnavailable as exc:
        pytest.skip(f"io_uring unavailable here: {exc}")


@pytest.fixture
def serve_in_process() -> Iterator[Callable[[str, ModelOptions], InProcess]]:
    started: list[InProcess] = []

    def start(name: str, options: ModelOptions) -> InProcess:
        started.append(InProcess(create_model(name, options)))
        return started[-1]

    yield start
    for server in started:
        if server.thread.is_alive():
            server.stop()


@pytest.mark.parametrize("protocol", ["echo", "http"])
@pytest.mark.parametrize(
    "name",
    [
        "thread-per-connection",
        "thread-pool",
        "reactor-select",
        "reactor-poll",
        "reactor-epoll",
        "main-sub",
        "async-uring",
    ],
)
def test_in_process_model_serves_and_stops(
    serve_in_process: Callable[[str, ModelOptions], InProcess], name: str, protocol: str
) -> None:
    if name == "async-uring":
        require_io_uring()
    threads_before = threading.active_count()
    server = serve_in_process(name, ModelOptions(protocol=protocol, workers=4))  # type: ignore[arg-type]
    run_clients(server.address, protocol)
    idle = socket.create_connection(server.address, timeout=5)  # held open across stop()
    request, response = PINGS[protocol]
    idle.sendall(request)
    assert recv_exactly(idle, len(response)) == response  # accepted and in service
    server.stop()
    assert idle.recv(1) == b"", "stop() must close the connections it was serving"
    idle.close()
    assert threading.active_count() == threads_before


def test_thread_pool_size_is_its_concurrency(
    serve_in_process: Callable[[str, ModelOptions], InProcess],
) -> None:
    """With 2 workers a third long-lived connection waits until one of the two closes."""
    server = serve_in_process("thread-pool", ModelOptions(workers=2))
    first, second, third = (socket.create_connection(server.address, timeout=5) for _ in range(3))
    for sock in (first, second, third):
        sock.sendall(b"ping")
    assert recv_exactly(first, 4) == b"ping"
    assert recv_exactly(second, 4) == b"ping"
    third.settimeout(0.3)
    with pytest.raises(TimeoutError):
        third.recv(4)
    first.close()
    third.settimeout(5)
    assert recv_exactly(third, 4) == b"ping"
    for sock in (second, third):
        sock.close()
    server.stop()


def test_registry_knows_every_blocking_model() -> None:
    assert set(MODELS) == {
        "process-per-connection",
        "thread-per-connection",
        "thread-pool",
        "reactor-select",
        "reactor-poll",
        "reactor-epoll",
        "main-sub",
        "async-uring",
    }
    with pytest.raises(ValueError, match="unknown model"):
        create_model("no-such-model", ModelOptions())


# --- the fork model, as a real process -------------------------------------------------


def children_of(pid: int) -> dict[int, str]:
    """Child pid -> state letter (Z for a zombie), from /proc/*/stat."""
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue  # exited while we looked
        state, ppid = stat.rpartition(")")[2].split()[:2]
        if int(ppid) == pid:
            children[int(entry)] = state
    return children


def socket_inodes(pid: int) -> set[int]:
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if match := re.fullmatch(r"socket:\[(\d+)\]", target):
            inodes.add(int(match.group(1)))
    return inodes


def listen_inode(port: int) -> int:
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            if int(fields[1].split(":")[1], 16) == port and fields[3] == "0A":
                return int(fields[9])
    raise AssertionError(f"no listener on port {port}")


@pytest.fixture
def fork_server() -> Iterator[Callable[[str], tuple[subprocess.Popen[str], tuple[str, int]]]]:
    procs: list[subprocess.Popen[str]] = []

    def start(protocol: str) -> tuple[subprocess.Popen[str], tuple[str, int]]:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "ioreactor",
                "model",
                "process-per-connection",
                "--listen",
                "127.0.0.1:0",
                "--protocol",
                protocol,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        procs.append(proc)
        assert proc.stdout is not None
        match = re.search(r"on (\S+):(\d+)$", proc.stdout.readline().strip())
        if not match:
            proc.kill()
            pytest.fail(f"the server did not announce its address: {proc.communicate()[1]}")
        return proc, (match.group(1), int(match.group(2)))

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize("protocol", ["echo", "http"])
def test_fork_model_serves_and_leaves_no_zombies(
    fork_server: Callable[[str], tuple[subprocess.Popen[str], tuple[str, int]]], protocol: str
) -> None:
    proc, address = fork_server(protocol)
    run_clients(address, protocol)
    assert wait_until(lambda: not children_of(proc.pid)), (
        f"children left behind (Z = zombie): {children_of(proc.pid)}"
    )
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 0


def test_fork_model_closes_the_right_descriptors_and_stops_children(
    fork_server: Callable[[str], tuple[subprocess.Popen[str], tuple[str, int]]],
) -> None:
    proc, address = fork_server("echo")
    clients = [socket.create_connection(address, timeout=5) for _ in range(3)]
    for sock in clients:
        sock.sendall(b"x")
        assert recv_exactly(sock, 1) == b"x"  # served, so its child exists
    children = children_of(proc.pid)
    assert len(children) == 3
    listening = listen_inode(address[1])
    assert socket_inodes(proc.pid) == {listening}, "the parent must close connected sockets"
    for child in children:
        inodes = socket_inodes(child)
        assert listening not in inodes, "a child must close the listening socket"
        assert len(inodes) == 1
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 0
    for sock in clients:
        assert sock.recv(1) == b"", "children are terminated when the server stops"
        sock.close()
    assert not any(os.path.exists(f"/proc/{child}") for child in children)


@pytest.mark.parametrize("name", ["thread-per-connection", "reactor-epoll", "main-sub"])
def test_http_10_request_is_answered_then_closed(
    serve_in_process: Callable[[str, ModelOptions], InProcess], name: str
) -> None:
    server = serve_in_process(name, ModelOptions(protocol="http", workers=2))
    with socket.create_connection(server.address, timeout=5) as sock:
        sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
        reply = b""
        while chunk := sock.recv(4096):
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 200 OK\r\n") and reply.endswith(b"Hello, World!")
    assert b"Connection: close\r\n" in reply
    server.stop()
