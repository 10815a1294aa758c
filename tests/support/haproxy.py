"""A real HAProxy started by a test: from a configuration text, on loopback or inside a
:class:`support.netns.Host`, ready once every port it binds listens, stopped when the
test ends. Needs Debian's ``haproxy`` package; a test that asks for it without it is
skipped saying so (never passed).
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from support.processes import Process, spawn
from support.programs import require_program

if TYPE_CHECKING:
    from support.netns import Host

#: Where Debian installs it (``/usr/sbin`` is not on every user's PATH).
HAPROXY_PATHS = ("/usr/sbin/haproxy", "/usr/local/sbin/haproxy")
#: Seconds HAProxy has to bind its ports, and to exit once told to stop.
START_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0


def haproxy_program() -> str:
    """The haproxy executable, or skip the test naming what it needs."""
    return require_program(
        "haproxy",
        "HAProxy: no haproxy in PATH, /usr/sbin or /usr/local/sbin "
        "(Debian: apt-get install haproxy)",
        HAPROXY_PATHS,
    )


def listening_tcp_ports() -> set[int]:
    """Local TCP ports in the LISTEN state in this network namespace (from /proc, so
    that waiting for a listener opens no connection through it)."""
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except FileNotFoundError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "0A":  # TCP_LISTEN
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


class HAProxy:
    """``with HAProxy(config, workdir, ports) as proxy:`` runs ``haproxy -db -f`` on
    ``config`` (checked with ``haproxy -c`` first) until every port in ``ports`` listens
    (in ``host``'s namespace when given). Its output goes to ``workdir/haproxy.log`` and is
    shown if it fails."""

    def __init__(
        self, config: str, workdir: Path, ports: list[int], *, host: Host | None = None
    ) -> None:
        self.program = haproxy_program()
        self.config_path = workdir / "haproxy.cfg"
        self.log_path = workdir / "haproxy.log"
        self.config = config
        self.ports = ports
        self.host = host
        self.process: Process | None = None

    def __enter__(self) -> HAProxy:
        self.config_path.write_text(self.config)
        check = subprocess.run(
            [self.program, "-c", "-f", str(self.config_path)],
            capture_output=True,
            timeout=START_TIMEOUT,
        )
        if check.returncode != 0:
            raise RuntimeError(f"haproxy -c refused the configuration:\n{check.stdout!r}")
        argv = [self.program, "-db", "-f", str(self.config_path)]
        if self.host is not None:
            self.process = self.host.spawn(argv, self.log_path)
        else:
            self.process = spawn(argv, self.log_path)
        deadline = time.monotonic() + START_TIMEOUT
        while not set(self.ports) <= self.listening():
            if not self.process.running() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"haproxy did not start; its output:\n{self.output()}")
            time.sleep(0.02)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def listening(self) -> set[int]:
        return self.host.listening_ports() if self.host is not None else listening_tcp_ports()

    def stop(self) -> None:
        """SIGTERM (HAProxy's hard stop: it closes every connection), SIGKILL after the
        timeout."""
        if self.process is not None:
            self.process.stop(STOP_TIMEOUT)

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
