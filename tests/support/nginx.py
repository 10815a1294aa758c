"""A real nginx started by a test: Debian's ``nginx`` (``nginx-light`` or any flavour) in
the foreground, every path of its own under the test's directory, on loopback or inside a
:class:`support.netns.Host`; stopped when the test ends.

The test supplies what goes inside ``http { }`` (a site: ``upstream`` and ``server``
blocks, such as ``deploy/nginx/ioreactor.conf``); :data:`MAIN_CONFIG` wraps it with what
a test needs and a package's ``/etc/nginx/nginx.conf`` would otherwise set: ``daemon
off``, pid, error and access logs and every temp path under ``workdir``. The
configuration is checked with ``nginx -t`` first; the runner is ready once every port
the test names listens. A test that needs nginx without it is skipped, saying so.
"""

from __future__ import annotations

import os
import pwd
import signal
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from support.haproxy import listening_tcp_ports
from support.processes import Process, spawn
from support.programs import require_program

if TYPE_CHECKING:
    from support.netns import Host

#: Where Debian installs it (``/usr/sbin`` is not on every user's PATH).
NGINX_PATHS = ("/usr/sbin/nginx", "/usr/local/sbin/nginx")
#: Seconds nginx has to pass ``-t`` and bind its ports, and to exit once told to stop.
START_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0

#: The main context around the test's ``http`` content. ``{site}`` is the path of that
#: content; ``{user}`` the worker user (this user: the files are the test's own).
MAIN_CONFIG = """\
daemon off;
master_process on;
worker_processes 1;
user {user};
pid {workdir}/nginx.pid;
error_log {workdir}/error.log info;

events {{
    worker_connections 1024;
}}

http {{
    access_log {workdir}/access.log;
    client_body_temp_path {workdir}/client_body;
    proxy_temp_path {workdir}/proxy;
    fastcgi_temp_path {workdir}/fastcgi;
    uwsgi_temp_path {workdir}/uwsgi;
    scgi_temp_path {workdir}/scgi;
    include {site};
}}
"""


def nginx_program() -> str:
    """The nginx executable, or skip the test naming what it needs."""
    return require_program(
        "nginx",
        "nginx: no nginx in PATH, /usr/sbin or /usr/local/sbin "
        "(Debian: apt-get install nginx-light)",
        NGINX_PATHS,
    )


class Nginx:
    """``with Nginx(site, workdir, ports=[80], host=lb) as nginx:`` runs
    ``nginx -e stderr -p workdir -c nginx.conf`` (in ``host``'s namespace when given)
    until every port in ``ports`` listens there. Its output goes to ``workdir/nginx.log``,
    its error log to ``workdir/error.log``; both are shown if it fails."""

    def __init__(
        self, site: str, workdir: Path, ports: list[int], *, host: Host | None = None
    ) -> None:
        self.program = nginx_program()
        self.workdir = workdir
        self.site_path = workdir / "site.conf"
        self.config_path = workdir / "nginx.conf"
        self.log_path = workdir / "nginx.log"
        self.site = site
        self.ports = ports
        self.host = host
        self.process: Process | None = None

    def command(self, *args: str) -> list[str]:
        argv = [self.program, "-e", "stderr", "-p", str(self.workdir), "-c", str(self.config_path)]
        return [*argv, *args]

    def __enter__(self) -> Nginx:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.site_path.write_text(self.site)
        user = pwd.getpwuid(os.geteuid()).pw_name
        self.config_path.write_text(
            MAIN_CONFIG.format(workdir=self.workdir, site=self.site_path, user=user)
        )
        check = subprocess.run(
            self.command("-t"), capture_output=True, text=True, timeout=START_TIMEOUT
        )
        if check.returncode != 0:
            raise RuntimeError(f"nginx -t refused the configuration:\n{check.stderr}")
        if self.host is not None:
            self.process = self.host.spawn(self.command(), self.log_path)
        else:
            self.process = spawn(self.command(), self.log_path)
        deadline = time.monotonic() + START_TIMEOUT
        while not set(self.ports) <= self.listening():
            if not self.process.running() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"nginx did not start; its output:\n{self.output()}")
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

    def reload(self) -> None:
        """SIGHUP: nginx re-reads its configuration (new workers, old ones finish)."""
        assert self.process is not None
        self.process.send_signal(signal.SIGHUP)

    def stop(self) -> None:
        """SIGQUIT (graceful: workers finish their requests), SIGKILL after the timeout."""
        if self.process is not None:
            self.process.stop(STOP_TIMEOUT, sig=signal.SIGQUIT)

    def output(self) -> str:
        parts = []
        for path in (self.log_path, self.workdir / "error.log"):
            if path.exists():
                parts.append(f"--- {path.name}\n{path.read_text(errors='replace')}")
        return "\n".join(parts)
