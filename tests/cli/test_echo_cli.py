"""`ioreactor echo` with several listeners, socket options and bad input."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

from ioreactor.testing import free_port

ECHO = [sys.executable, "-m", "ioreactor", "echo"]


def test_one_server_serves_tcp_udp_and_unix_with_a_socket_option(tmp_path: Path) -> None:
    tcp, udp, path = (
        free_port(),
        free_port(kind=socket.SOCK_DGRAM),
        tmp_path / "e.sock",
    )
    server = subprocess.Popen(
        [
            *ECHO,
            "--listen",
            f"127.0.0.1:{tcp}",
            "--listen",
            f"udp://127.0.0.1:{udp}",
            "--listen",
            f"unix://{path}",
            "--sockopt",
            "SO_RCVBUF=65536",
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while not path.exists():
            assert server.poll() is None and time.monotonic() < deadline, "server did not start"
            time.sleep(0.05)
        with socket.create_connection(("127.0.0.1", tcp), timeout=10) as s:
            s.sendall(b"tcp")
            assert s.recv(3) == b"tcp"
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(10)
            s.sendto(b"udp", ("127.0.0.1", udp))
            assert s.recvfrom(3)[0] == b"udp"
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(10)
            s.connect(str(path))
            s.sendall(b"unix")
            assert s.recv(4) == b"unix"
    finally:
        server.terminate()
        try:
            # communicate(), not wait(): a server that logs a lot must not block on a
            # full stderr pipe while the test waits for it to exit.
            _, err = server.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            _, err = server.communicate()
            raise AssertionError(f"no exit 20 s after SIGTERM: {err[-3000:]}") from None
    assert server.returncode == 0, err[-3000:]
    assert "Traceback" not in err and " ERROR " not in err, err[-3000:]
    assert not path.exists(), "the socket file is removed on shutdown"


def test_bad_address_and_unknown_option_are_clear_errors() -> None:
    bad = subprocess.run(
        [*ECHO, "--listen", "127.0.0.1:99999"], capture_output=True, text=True, timeout=30
    )
    assert bad.returncode == 2 and "port 99999 is out of range" in bad.stderr
    opt = subprocess.run(
        [*ECHO, "--listen", "udp://127.0.0.1:0", "--sockopt", "NOPE=1"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert opt.returncode == 2 and "unknown socket option 'NOPE'" in opt.stderr


def test_a_unix_socket_with_the_default_flags_is_served_by_fd_passing(tmp_path: Path) -> None:
    # Before: "dispatch 'reuseport' is for TCP; a Unix socket needs 'fdpass'" -- the
    # default dispatch did not look at the address.
    path = tmp_path / "x.sock"
    server = subprocess.Popen(
        [*ECHO, "--listen", f"unix://{path}", "--workers", "2"],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while not path.exists():
            assert server.poll() is None and time.monotonic() < deadline, "server did not start"
            time.sleep(0.05)
        for _ in range(4):
            with socket.socket(socket.AF_UNIX) as s:
                s.settimeout(10)
                s.connect(str(path))
                s.sendall(b"unix")
                assert s.recv(4) == b"unix"
    finally:
        server.terminate()
        _, err = server.communicate(timeout=20)
    assert server.returncode == 0, err
    assert "dispatch fdpass" in err
