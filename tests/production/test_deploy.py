"""The systemd units under ``deploy/systemd`` (docs/deploy.md): accepted by systemd's own
checker, and saying what the deployment relies on. The server's side of them (socket
activation, the notify protocol, the watchdog, SIGHUP) is issue 19's item 2; until it
lands, this is a syntax check (the nginx and HAProxy files run in test_cluster.py).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from support.programs import require_program

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
    # The graceful stop fits in systemd's stop timeout.
    (shutdown,) = re.findall(r"--shutdown-timeout (\d+)", exec_start)
    assert int(shutdown) < int(setting(service, "TimeoutStopSec")[0].rstrip("s"))
    assert setting(socket_unit, "ListenStream") == ["0.0.0.0:8080"]
    assert setting(socket_unit, "FileDescriptorName") == ["http"]
