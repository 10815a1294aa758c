"""Socket activation and the notify protocol, with real processes.

Debian's ``systemd-socket-activate`` binds, waits for the first connection (or
datagram) and execs a child that takes the sockets with :func:`listen_fds` and serves
it. The error cases run in a child that lays out fds 3, 4, ... itself, as a service
manager does. :class:`Notifier` sends to a Unix datagram socket the test binds (path
and abstract forms), which reads each message and the sender's pid (SCM_CREDENTIALS).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import struct
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ioreactor.loop.event_loop import EventLoop
from ioreactor.net.systemd import (
    Notifier,
    SystemdError,
    socket_from_fd,
)
from ioreactor.testing import free_port, open_fds
from support.systemd import socket_activate

TIMEOUT = 20.0


# -- socket activation with the real tool -------------------------------------------------

#: The activated service: takes its sockets, tells the notify socket it is ready, answers
#: the first request with what it found, and exits.
SERVICE = textwrap.dedent(
    """
    import json, os, socket
    from ioreactor.loop.event_loop import EventLoop
    from ioreactor.net.handlers import Handler
    from ioreactor.net.server import TcpServer
    from ioreactor.net.systemd import LISTEN_VARIABLES, Notifier, listen_fds

    env = {name: os.environ.get(name) for name in LISTEN_VARIABLES}
    sockets = listen_fds()
    report = {
        "pid": os.getpid(),
        "env": env,
        "left": [name for name in LISTEN_VARIABLES if name in os.environ],
        "sockets": [
            {
                "name": s.name,
                "fd": s.fd,
                "family": s.family.name,
                "type": s.type.name,
                "listening": s.listening,
                "inheritable": os.get_inheritable(s.fd),
                "blocking": s.sock.getblocking(),
                "sockname": s.sock.getsockname(),
            }
            for s in sockets
        ],
    }
    loop = EventLoop()

    class Reply(Handler):
        def on_message(self, conn, buffer):
            buffer.retrieve_all()
            conn.send(json.dumps(report).encode() + b"\\n")
            conn.close()

        def on_close(self, conn):
            loop.stop()

    stream = [s for s in sockets if s.type == socket.SOCK_STREAM and s.family != socket.AF_UNIX]
    host, port = stream[0].sock.getsockname()[:2]
    TcpServer(loop, f"{host}:{port}", Reply(), listener=stream[0].sock).start()
    Notifier().ready(status=f"serving {len(sockets)} socket(s)")
    loop.call_later(20, loop.stop)
    loop.run()
    """
)


def connect_when_listening(port: int, process: subprocess.Popen[bytes]) -> socket.socket:
    """Connect once the tool listens (the connection is what starts the service)."""
    deadline = time.monotonic() + TIMEOUT
    while True:
        try:
            return socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        except ConnectionRefusedError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def read_line(sock: socket.socket) -> bytes:
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


@pytest.fixture
def notify_socket(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[str, socket.socket]]:
    """A Unix datagram socket standing in for systemd's: its NOTIFY_SOCKET name and the
    socket, which receives the sender's credentials with each message."""
    form = getattr(request, "param", "path")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    if form == "path":
        name = str(tmp_path / "notify")
        sock.bind(name)
    else:
        name = f"@ioreactor-test-{uuid.uuid4().hex}"
        sock.bind("\0" + name[1:])
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
    sock.settimeout(TIMEOUT)
    with sock:
        yield name, sock


def receive(sock: socket.socket) -> tuple[bytes, int]:
    """One notification and the pid the kernel vouches sent it."""
    ucred = struct.Struct("iII")  # pid, uid, gid
    data, ancillary, _, _ = sock.recvmsg(4096, socket.CMSG_SPACE(ucred.size))
    pids = [
        ucred.unpack(payload[: ucred.size])[0]
        for level, kind, payload in ancillary
        if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS
    ]
    assert len(pids) == 1, ancillary
    return data, pids[0]


def test_systemd_socket_activate_starts_a_service_on_named_inherited_sockets(
    tmp_path: Path, notify_socket: tuple[str, socket.socket]
) -> None:
    """A TCP and a Unix listener, named with --fdname: the service finds both at fds 3
    and 4 with their names, families and types, serves the connection that started it
    on the inherited TCP listener, and says READY=1 on the notify socket."""
    tool = socket_activate()
    notify_name, notify = notify_socket
    port = free_port()
    unix_path = tmp_path / "local.sock"
    command = [
        tool,
        "-l",
        f"127.0.0.1:{port}",
        "-l",
        str(unix_path),
        "--fdname=web:local",
        f"--setenv=NOTIFY_SOCKET={notify_name}",
        sys.executable,
        "-c",
        SERVICE,
    ]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as process:
        try:
            with connect_when_listening(port, process) as sock:
                sock.sendall(b"GET\n")
                line = read_line(sock)
            message, sender = receive(notify)
            _, err = process.communicate(timeout=TIMEOUT)
        finally:
            if process.poll() is None:
                process.kill()
    assert line, f"no answer; the tool said: {err.decode()}"
    report = json.loads(line)
    assert process.returncode == 0, err.decode()
    # The tool execs the service in its own process: LISTEN_PID is that pid.
    assert report["pid"] == process.pid == int(report["env"]["LISTEN_PID"]) == sender
    assert report["env"]["LISTEN_FDS"] == "2" and report["env"]["LISTEN_FDNAMES"] == "web:local"
    assert report["left"] == []  # removed: processes it starts will not take the fds
    web, local = report["sockets"]
    assert (web["name"], web["fd"], web["family"], web["type"]) == (
        "web",
        3,
        "AF_INET",
        "SOCK_STREAM",
    )
    assert web["sockname"] == ["127.0.0.1", port]
    assert (local["name"], local["fd"], local["family"], local["type"]) == (
        "local",
        4,
        "AF_UNIX",
        "SOCK_STREAM",
    )
    assert local["sockname"] == str(unix_path)
    for s in (web, local):
        assert s["listening"] and not s["inheritable"] and not s["blocking"]
    assert message == b"READY=1\nSTATUS=serving 2 socket(s)"


DATAGRAM_SERVICE = textwrap.dedent(
    """
    import json, select
    from ioreactor.net.systemd import listen_fds

    [dns] = listen_fds()
    select.select([dns.sock], [], [], 20)
    data, peer = dns.sock.recvfrom(512)
    found = [dns.name, dns.fd, dns.family.name, dns.type.name, dns.listening, data.decode()]
    dns.sock.sendto(json.dumps(found).encode(), peer)
    """
)


def test_systemd_socket_activate_datagram_socket_is_detected_as_such() -> None:
    tool = socket_activate()
    port = free_port(kind=socket.SOCK_DGRAM)
    command = [tool, "--datagram", "-l", f"127.0.0.1:{port}", "--fdname=dns"]
    with (
        subprocess.Popen(
            [*command, sys.executable, "-c", DATAGRAM_SERVICE],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        ) as process,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client,
    ):
        try:
            client.settimeout(0.2)
            deadline = time.monotonic() + TIMEOUT
            while True:  # until the tool is up and the service answers
                client.sendto(b"query", ("127.0.0.1", port))
                try:
                    answer = client.recv(512)
                    break
                except (TimeoutError, ConnectionRefusedError):
                    assert time.monotonic() < deadline and process.poll() is None
            _, err = process.communicate(timeout=TIMEOUT)
        finally:
            if process.poll() is None:
                process.kill()
    assert process.returncode == 0, err.decode()
    assert json.loads(answer) == ["dns", 3, "AF_INET", "SOCK_DGRAM", False, "query"]


# -- listen_fds() semantics and errors, fds laid out by a child ---------------------------

#: Lays out fds 3, 4, ... from a list of kinds, sets the variables (``{pid}`` and
#: ``{ppid}`` replaced), calls listen_fds() and prints what it got, or its error.
HARNESS = textwrap.dedent(
    """
    import fcntl, json, os, socket, sys
    from ioreactor.net.systemd import LISTEN_VARIABLES, SystemdError, listen_fds

    spec = json.loads(sys.argv[1])
    made, copies = [], []
    for kind in spec["fds"]:
        if kind == "tcp":
            made.append(socket.create_server(("127.0.0.1", 0)))
        elif kind == "tcp6":
            made.append(socket.create_server(("::1", 0), family=socket.AF_INET6))
        elif kind == "udp":
            made.append(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
        elif kind == "unix-dgram":
            made.append(socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM))
        elif kind == "pipe":
            r, w = os.pipe()
            made.append(os.fdopen(r, "rb"))
        if kind == "closed":
            copies.append(None)
        else:
            copies.append(fcntl.fcntl(made[-1].fileno(), fcntl.F_DUPFD, 100))
    for thing in made:
        thing.close()
    for i, copy in enumerate(copies):
        if copy is None:
            try:
                os.close(3 + i)
            except OSError:
                pass
        else:
            os.dup2(copy, 3 + i)  # inheritable, as a service manager passes them
            os.close(copy)
    for name, value in spec["env"].items():
        os.environ[name] = value.format(pid=os.getpid(), ppid=os.getppid())
    try:
        sockets = listen_fds(keep_environment=spec.get("keep", False))
        got = [
            [s.name, s.fd, s.family.name, s.type.name, s.listening,
             os.get_inheritable(s.fd), s.sock.getblocking()]
            for s in sockets
        ]
        result = {"sockets": got}
    except SystemdError as exc:
        result = {"error": str(exc)}
    result["left"] = sorted(n for n in LISTEN_VARIABLES if n in os.environ)
    result["fd3_inheritable"] = os.get_inheritable(3) if spec["fds"][:1] != ["closed"] else None
    print(json.dumps(result))
    """
)


def activated(fds: list[str], env: dict[str, str], keep: bool = False) -> dict[str, Any]:
    spec = json.dumps({"fds": fds, "env": env, "keep": keep})
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("LISTEN_", "NOTIFY_"))}
    done = subprocess.run(
        [sys.executable, "-c", HARNESS, spec],
        capture_output=True,
        timeout=TIMEOUT,
        env=clean,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def test_listen_fds_detects_family_and_type_of_each_socket() -> None:
    result = activated(
        ["tcp", "udp", "unix-dgram"],
        {"LISTEN_PID": "{pid}", "LISTEN_FDS": "3", "LISTEN_FDNAMES": "web:dns:log"},
    )
    assert result["sockets"] == [
        ["web", 3, "AF_INET", "SOCK_STREAM", True, False, False],
        ["dns", 4, "AF_INET", "SOCK_DGRAM", False, False, False],
        ["log", 5, "AF_UNIX", "SOCK_DGRAM", False, False, False],
    ]
    assert result["left"] == []


def test_listen_fds_without_names_calls_them_unknown() -> None:
    result = activated(["tcp", "tcp"], {"LISTEN_PID": "{pid}", "LISTEN_FDS": "2"})
    assert [s[0] for s in result["sockets"]] == ["unknown", "unknown"]


def test_listen_fds_ipv6_listener() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 here")
    result = activated(["tcp6"], {"LISTEN_PID": "{pid}", "LISTEN_FDS": "1"})
    if "error" in result:
        pytest.fail(result["error"])
    assert result["sockets"][0][2:4] == ["AF_INET6", "SOCK_STREAM"]


def test_variables_for_another_process_are_ignored_and_removed() -> None:
    """LISTEN_PID names our parent: the fds are not ours; nothing is touched."""
    result = activated(["tcp"], {"LISTEN_PID": "{ppid}", "LISTEN_FDS": "1"})
    assert result == {"sockets": [], "left": [], "fd3_inheritable": True}


def test_no_listen_pid_means_no_sockets() -> None:
    assert activated(["tcp"], {"LISTEN_FDS": "1"})["sockets"] == []


def test_keep_environment_leaves_the_variables() -> None:
    result = activated(
        ["tcp"], {"LISTEN_PID": "{pid}", "LISTEN_FDS": "1", "LISTEN_FDNAMES": "a"}, keep=True
    )
    assert len(result["sockets"]) == 1
    assert result["left"] == ["LISTEN_FDNAMES", "LISTEN_FDS", "LISTEN_PID"]


@pytest.mark.parametrize(
    ("fds", "env", "message"),
    [
        (["tcp"], {"LISTEN_PID": "x1", "LISTEN_FDS": "1"}, "LISTEN_PID='x1' is not a decimal"),
        (["tcp"], {"LISTEN_PID": "{pid}", "LISTEN_FDS": "-1"}, "LISTEN_FDS='-1' is not a decimal"),
        (["tcp"], {"LISTEN_PID": "{pid}", "LISTEN_FDS": "0"}, "LISTEN_FDS=0: socket activation"),
        (
            ["tcp", "tcp"],
            {"LISTEN_PID": "{pid}", "LISTEN_FDS": "2", "LISTEN_FDNAMES": "web"},
            "LISTEN_FDNAMES='web' names 1 fd(s); LISTEN_FDS=2",
        ),
        (
            ["tcp", "pipe"],
            {"LISTEN_PID": "{pid}", "LISTEN_FDS": "2"},
            "fd 4 is a FIFO, not a socket",
        ),
        (["closed"], {"LISTEN_PID": "{pid}", "LISTEN_FDS": "1"}, "fd 3 was to be inherited but"),
    ],
    ids=["bad pid", "bad count", "zero", "names", "pipe", "closed"],
)
def test_malformed_activation_is_a_clear_error_and_still_cleans_up(
    fds: list[str], env: dict[str, str], message: str
) -> None:
    result = activated(fds, env)
    assert message in result["error"]
    assert result["left"] == []


def test_socket_from_fd_adopts_an_inherited_socket() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as original:
        original.bind(("127.0.0.1", 0))
        fd = os.dup(original.fileno())
        os.set_inheritable(fd, True)
        with socket_from_fd(fd) as sock:
            assert (sock.fileno(), sock.family, sock.type) == (
                fd,
                socket.AF_INET,
                socket.SOCK_DGRAM,
            )
            assert sock.getsockname() == original.getsockname()
            assert not sock.getblocking() and not os.get_inheritable(fd)


def test_socket_from_fd_refuses_what_is_not_a_socket() -> None:
    r, w = os.pipe()
    try:
        with pytest.raises(SystemdError, match=f"fd {r} is a FIFO, not a socket"):
            socket_from_fd(r)
    finally:
        os.close(r)
        os.close(w)
    with pytest.raises(SystemdError, match=f"fd {r} was to be inherited but is not open"):
        socket_from_fd(r)
    with pytest.raises(SystemdError, match="fd -1: not a file descriptor"):
        socket_from_fd(-1)


# -- the notify protocol ----------------------------------------------------------------


@pytest.mark.parametrize("notify_socket", ["path", "abstract"], indirect=True)
def test_notifier_sends_each_state_as_one_datagram(
    notify_socket: tuple[str, socket.socket], monkeypatch: pytest.MonkeyPatch
) -> None:
    name, sock = notify_socket
    monkeypatch.setenv("NOTIFY_SOCKET", name)
    notifier = Notifier()
    try:
        assert notifier.enabled and notifier.address == name
        assert notifier.ready()
        assert receive(sock) == (b"READY=1", os.getpid())
        assert notifier.ready(status="serving 2 workers")
        assert receive(sock)[0] == b"READY=1\nSTATUS=serving 2 workers"
        assert notifier.status("draining 3 connections")
        assert receive(sock)[0] == b"STATUS=draining 3 connections"
        assert notifier.watchdog()
        assert receive(sock)[0] == b"WATCHDOG=1"
        assert notifier.stopping()
        assert receive(sock)[0] == b"STOPPING=1"
        assert notifier.notify("MAINPID=4242", "X_IOREACTOR=1")
        assert receive(sock)[0] == b"MAINPID=4242\nX_IOREACTOR=1"
        before = time.monotonic_ns() // 1000
        assert notifier.reloading(status="reloading")
        data, _ = receive(sock)
        after = time.monotonic_ns() // 1000
        reloading, monotonic, status = data.split(b"\n")
        assert reloading == b"RELOADING=1" and status == b"STATUS=reloading"
        key, _, usec = monotonic.partition(b"=")
        assert key == b"MONOTONIC_USEC" and before <= int(usec) <= after
    finally:
        notifier.close()


def test_a_notification_from_another_process_carries_its_pid(
    notify_socket: tuple[str, socket.socket],
) -> None:
    """What systemd sees from a service: the sender's pid, vouched by the kernel."""
    name, sock = notify_socket
    script = "from ioreactor.net.systemd import Notifier; Notifier().ready(status='up')"
    env = {**os.environ, "NOTIFY_SOCKET": name}
    child = subprocess.run([sys.executable, "-c", script], env=env, timeout=TIMEOUT, check=True)
    data, pid = receive(sock)
    assert data == b"READY=1\nSTATUS=up" and child.returncode == 0 and pid != os.getpid()


def test_without_notify_socket_every_call_is_a_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    monkeypatch.setenv("WATCHDOG_USEC", "2000000")
    fds = open_fds()
    notifier = Notifier()
    assert not notifier.enabled and repr(notifier) == "<Notifier disabled>"
    assert not any(
        [
            notifier.ready("x"),
            notifier.reloading(),
            notifier.stopping(),
            notifier.status("x"),
            notifier.watchdog(),
        ]
    )
    assert notifier.watchdog_interval() is None  # nobody to ping
    assert open_fds() == fds  # no socket was made
    notifier.close()


def test_watchdog_interval_is_half_the_timeout_for_this_process_only(
    notify_socket: tuple[str, socket.socket], monkeypatch: pytest.MonkeyPatch
) -> None:
    name, _ = notify_socket
    monkeypatch.setenv("NOTIFY_SOCKET", name)
    monkeypatch.setenv("WATCHDOG_USEC", "3000000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    assert Notifier().watchdog_timeout() == 3.0
    assert Notifier().watchdog_interval() == 1.5
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert Notifier().watchdog_interval() == 1.5
    monkeypatch.setenv("WATCHDOG_PID", str(os.getppid()))  # a worker: the supervisor pings
    assert Notifier().watchdog_interval() is None
    monkeypatch.delenv("WATCHDOG_USEC")
    assert Notifier().watchdog_interval() is None


def test_watchdog_pings_at_the_interval_from_a_loop(
    notify_socket: tuple[str, socket.socket], monkeypatch: pytest.MonkeyPatch
) -> None:
    name, sock = notify_socket
    monkeypatch.setenv("NOTIFY_SOCKET", name)
    monkeypatch.setenv("WATCHDOG_USEC", "200000")
    notifier = Notifier()
    interval = notifier.watchdog_interval()
    assert interval == 0.1
    loop = EventLoop()
    try:
        loop.call_every(interval, notifier.watchdog)
        loop.call_later(0.55, loop.stop)
        loop.run()
    finally:
        loop.close()
        notifier.close()
    pings = 0
    sock.settimeout(0.5)
    try:
        while receive(sock)[0] == b"WATCHDOG=1":
            pings += 1
    except TimeoutError:
        pass
    assert 2 <= pings <= 6


def test_unset_environment_removes_the_variables(
    notify_socket: tuple[str, socket.socket], monkeypatch: pytest.MonkeyPatch
) -> None:
    name, sock = notify_socket
    monkeypatch.setenv("NOTIFY_SOCKET", name)
    monkeypatch.setenv("WATCHDOG_USEC", "1000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    notifier = Notifier(unset_environment=True)
    assert not {"NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"} & set(os.environ)
    assert notifier.watchdog_interval() == 0.5 and notifier.watchdog()  # still ours
    assert receive(sock)[0] == b"WATCHDOG=1"
    notifier.close()


def test_a_failed_send_is_logged_once_and_never_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "notify"
    notifier = Notifier(str(path))
    with caplog.at_level(logging.DEBUG, logger="ioreactor.systemd"):
        assert not notifier.watchdog()
        assert not notifier.watchdog()
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and str(path) in warnings[0].getMessage()
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        assert notifier.watchdog()  # systemd is back: so are we
        assert sock.recv(100) == b"WATCHDOG=1"
    notifier.close()


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("NOTIFY_SOCKET", "vsock:2:1234", "neither a socket path"),
        ("NOTIFY_SOCKET", "run/notify", "neither a socket path"),
        ("NOTIFY_SOCKET", "/" + "x" * 108, "longer than a Unix socket path"),
        ("WATCHDOG_USEC", "0", "WATCHDOG_USEC='0' is not a positive number"),
        ("WATCHDOG_USEC", "1.5", "WATCHDOG_USEC='1.5' is not a positive number"),
        ("WATCHDOG_PID", "me", "WATCHDOG_PID='me' is not a process id"),
    ],
)
def test_malformed_environment_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, message: str
) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", "@ioreactor-test")
    monkeypatch.setenv("WATCHDOG_USEC", "1000000")
    monkeypatch.setenv(variable, value)
    with pytest.raises(SystemdError, match=message):
        Notifier()


def test_assignments_cannot_smuggle_other_states() -> None:
    notifier = Notifier("@ioreactor-test")
    with pytest.raises(ValueError, match="a status is one line"):
        notifier.status("ok\nREADY=1")
    with pytest.raises(ValueError, match="is not one KEY=VALUE assignment"):
        notifier.notify("READY")
    with pytest.raises(ValueError, match="is not one KEY=VALUE assignment"):
        notifier.notify("ready=1")
    with pytest.raises(ValueError, match="is not one KEY=VALUE assignment"):
        notifier.notify("STATUS=a\nSTOPPING=1")
    notifier.close()
