"""The systemd units under ``deploy/systemd`` (docs/deploy.md): accepted by systemd's own
checker, saying what the deployment relies on, and started the way systemd starts them:
the socket unit's listener passed by Debian's ``systemd-socket-activate`` (LISTEN_FDS,
the unit's FileDescriptorName), the service's very ExecStart, NOTIFY_SOCKET and
WATCHDOG_USEC from WatchdogSec -- READY=1 once it serves, WATCHDOG=1 pings, RELOADING=1
and READY=1 around ExecReload's SIGHUP, STOPPING=1 and exit 0 on KillSignal. (The nginx
and HAProxy files run in test_cluster.py.)
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from ioreactor.testing import free_port, wait_until
from support.cli_process import http_get
from support.programs import require_program
from support.server_process import accepts
from support.systemd import NotifySocket, socket_activate

SYSTEMD = Path(__file__).resolve().parents[2] / "deploy" / "systemd"
UNITS = ("ioreactor.socket", "ioreactor.service")
#: Where the unit expects the program (a virtual environment in /opt/ioreactor).
INSTALLED_PROGRAM = "/opt/ioreactor/bin/ioreactor"


def unit(name: str) -> str:
    return (SYSTEMD / name).read_text()


def setting(text: str, key: str) -> list[str]:
    return re.findall(rf"^{re.escape(key)}=(.*)$", text, re.M)


def test_systemd_analyze_verify_accepts_the_units(tmp_path: Path) -> None:
    analyze = require_program(
        "systemd-analyze", "systemd-analyze (Debian: apt-get install systemd)"
    )
    program = Path(sys.executable).with_name("ioreactor")
    assert program.exists(), program
    for name in UNITS:  # the very files, the program where this checkout installed it
        text = unit(name).replace(INSTALLED_PROGRAM, str(program))
        (tmp_path / name).write_text(text)
    done = subprocess.run(
        [analyze, "verify", *(str(tmp_path / name) for name in UNITS)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    # Unknown keys and bad values are only warnings to systemd: none allowed here.
    ours = [line for line in done.stderr.splitlines() if "ioreactor." in line]
    assert ours == [], "\n".join(ours)


def test_the_units_say_what_the_deployment_relies_on() -> None:
    service, socket_unit = unit("ioreactor.service"), unit("ioreactor.socket")
    assert setting(service, "Type") == ["notify"]
    assert setting(service, "NotifyAccess") == ["main"]
    assert setting(service, "ExecReload") == ["/bin/kill -HUP $MAINPID"]
    assert setting(service, "WatchdogSec") == ["10s"]
    assert setting(service, "Requires") == ["ioreactor.socket"]
    (exec_start,) = setting(service, "ExecStart")
    assert exec_start.startswith(f"{INSTALLED_PROGRAM} serve ")
    assert "--listen" not in exec_start  # the listener comes from the socket unit
    # The graceful stop (the drain, then the connections' last requests) fits in
    # systemd's stop timeout.
    (shutdown,) = re.findall(r"--shutdown-timeout (\d+)", exec_start)
    (drain,) = re.findall(r"--drain-delay (\d+)", exec_start)
    assert int(drain) + int(shutdown) < int(setting(service, "TimeoutStopSec")[0].rstrip("s"))
    assert setting(socket_unit, "ListenStream") == ["0.0.0.0:8080"]
    assert setting(socket_unit, "FileDescriptorName") == ["http"]


@pytest.mark.timeout(90)
def test_the_service_starts_as_systemd_starts_it(tmp_path: Path) -> None:
    service, socket_unit = unit("ioreactor.service"), unit("ioreactor.socket")
    (exec_start,) = setting(service, "ExecStart")
    argv = exec_start.split()
    assert argv[0] == INSTALLED_PROGRAM
    argv[0] = str(Path(sys.executable).with_name("ioreactor"))
    (name,) = setting(socket_unit, "FileDescriptorName")
    (listen,) = setting(socket_unit, "ListenStream")
    assert listen.endswith(":8080")
    port = free_port()  # the unit's address, on a port free here
    (watchdog,) = setting(service, "WatchdogSec")
    usec = int(watchdog.rstrip("s")) * 1_000_000 // 20  # 20 times faster: pings every 0.25 s
    notify = NotifySocket(tmp_path / "notify")
    command = [socket_activate(), "-l", f"127.0.0.1:{port}", f"--fdname={name}"]
    command += [f"--setenv=NOTIFY_SOCKET={notify.name}", f"--setenv=WATCHDOG_USEC={usec}"]
    with (tmp_path / "service.log").open("wb") as log:
        tool = subprocess.Popen(
            [*command, *argv], stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        assert wait_until(lambda: accepts(port)), "systemd-socket-activate never listened"
        ready, pid = notify.wait_for("READY=1")
        assert pid == tool.pid and "STATUS=serving" in ready
        assert http_get(port, "/healthz") == (200, "ok\n")
        assert "WATCHDOG=1" in notify.drain(1.0)
        tool.send_signal(signal.SIGHUP)  # ExecReload
        notify.wait_for("RELOADING=1")
        notify.wait_for("READY=1")
        tool.send_signal(signal.SIGTERM)  # KillSignal
        notify.wait_for("STOPPING=1")
        assert tool.wait(60) == 0
    finally:
        notify.close()
        if tool.poll() is None:
            os.killpg(tool.pid, signal.SIGKILL)
            tool.wait()
