"""A lab or a benchmark stopped mid-run leaves no process behind.

Real commands, real signals: ``ioreactor lab c10k`` (its model server runs in a process
group of its own) and ``ioreactor echo-client --procs 2`` (multiprocessing load
processes) are stopped with SIGTERM, SIGINT and SIGHUP while their children run -- the
clean-up on the way out must stop them -- and with SIGKILL, after which no clean-up
runs and the kernel's parent-death signal must end them.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ioreactor_tools.bench.procstat import tree_pids
from ioreactor_tools.children import receive
from support.processes import as_in_a_terminal
from support.server_process import wait_accepting

pytestmark = [pytest.mark.skipif(sys.platform != "linux", reason="PR_SET_PDEATHSIG is Linux's")]

#: Runs ``ioreactor`` with SIGINT raising KeyboardInterrupt, as in a terminal, even if
#: the test runner started us with SIGINT ignored (which children would inherit).
RUN = (
    "import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "from ioreactor.cli import main; sys.exit(main(sys.argv[1:]))"
)
#: The environment a shell would give the lab.
CLEAN_ENVIRONMENT = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "VIRTUAL_ENV")
#: Liveness bound for every wait (the machine is shared).
TIMEOUT = 30.0


def command_line(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def alive(pid: int) -> bool:
    """Running (a zombie waiting for a parent that never reaps it counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def start(tmp_path: Path, *args: str) -> subprocess.Popen[bytes]:
    log = (tmp_path / "command.log").open("ab")
    return subprocess.Popen(
        [sys.executable, "-c", RUN, *args],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # the test, not a terminal, sends the signals
        preexec_fn=as_in_a_terminal,
        # A command started from a login shell: only the basic environment (what the
        # test runner's process gathered in a full run must not reach the lab).
        env={name: os.environ[name] for name in CLEAN_ENVIRONMENT if name in os.environ},
    )


def wait_for_children(proc: subprocess.Popen[bytes], marker: str, count: int) -> list[int]:
    """The descendants of ``proc`` whose command line has ``marker``, once there are
    ``count`` of them."""
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"the command exited with {proc.returncode}"
        found = [p for p in tree_pids(proc.pid)[1:] if marker in command_line(p)]
        if len(found) >= count:
            return found
        time.sleep(0.05)
    raise AssertionError(f"no {count} children with {marker!r} in {TIMEOUT} s")


def assert_all_gone(proc: subprocess.Popen[bytes], children: list[int]) -> None:
    try:
        proc.wait(TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError("the command did not exit") from None
    deadline = time.monotonic() + TIMEOUT / 2
    while any(alive(p) for p in children) and time.monotonic() < deadline:
        time.sleep(0.05)
    left = [(p, command_line(p)) for p in children if alive(p)]
    for pid, _ in left:
        os.kill(pid, signal.SIGKILL)
    assert not left, f"left running: {left}"


LAB = ("lab", "c10k", "--models", "reactor-epoll", "--levels", "100", "--duration", "60")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGKILL])
def test_a_lab_stopped_mid_run_leaves_no_server(tmp_path: Path, sig: signal.Signals) -> None:
    lab = start(tmp_path, *LAB, "--out", str(tmp_path / "out"))
    try:
        server = wait_for_children(lab, " model reactor-epoll ", 1)
        time.sleep(1.0)  # the step is under way: the load connects and echoes
        lab.send_signal(sig)
        assert_all_gone(lab, server)
    finally:
        if lab.poll() is None:
            lab.kill()
            lab.wait()
    if sig != signal.SIGKILL:
        assert lab.returncode == 128 + sig, (tmp_path / "command.log").read_text()


@pytest.fixture
def echo_port(tmp_path: Path) -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "ioreactor", "echo", "--listen", f"127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_accepting(port, server, TIMEOUT)
    yield port
    server.terminate()
    server.wait(TIMEOUT)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_a_load_generator_stopped_mid_run_leaves_no_load_process(
    tmp_path: Path, echo_port: int, sig: signal.Signals
) -> None:
    client = start(
        tmp_path, "echo-client", "--connect", f"127.0.0.1:{echo_port}", "--conns", "4",
        "--procs", "2", "--duration", "60", "--no-progress",
    )  # fmt: skip
    try:
        loads = wait_for_children(client, "multiprocessing", 2)
        time.sleep(1.0)
        client.send_signal(sig)
        assert_all_gone(client, loads)
    finally:
        if client.poll() is None:
            client.kill()
            client.wait()


def _says_then_exits(pipe: multiprocessing.connection.Connection) -> None:
    pipe.send(("ready", 3))


def _fails(pipe: multiprocessing.connection.Connection) -> None:
    pipe.send(("failed", repr(ValueError("no such host"))))


def test_receive_passes_a_message_and_names_a_child_that_failed_or_exited_early() -> None:
    ctx = multiprocessing.get_context("fork")  # the targets live in this test module
    parent_end, child_end = ctx.Pipe()
    child = ctx.Process(target=_says_then_exits, args=(child_end,))
    child.start()
    child_end.close()
    assert receive(parent_end, "worker 1") == ("ready", 3)
    child.join(TIMEOUT)  # gone: its end of the pipe is closed
    with pytest.raises(RuntimeError, match=r"^worker 1 exited early$"):
        receive(parent_end, "worker 1")
    parent_end, child_end = ctx.Pipe()
    child = ctx.Process(target=_fails, args=(child_end,))
    child.start()
    child_end.close()
    with pytest.raises(RuntimeError, match=r"^worker 2 failed: ValueError\('no such host'\)$"):
        receive(parent_end, "worker 2")
    child.join(TIMEOUT)
