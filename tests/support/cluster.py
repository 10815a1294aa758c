"""The production set-up of docs/deploy.md, built by a test: three ``ioreactor serve``
hosts, a balancer host running nginx or HAProxy on the very files under ``deploy/``, and
a client host that runs the load (:mod:`ioreactor_tools.bench.cluster_load`).

Topology (network namespaces on one bridge, :mod:`support.netns`)::

    client 10.200.0.100 --> lb 10.200.0.2:80 (nginx | HAProxy) --> app1 10.200.0.11:8080
                                                                   app2 10.200.0.12:8080
                                                                   app3 10.200.0.13:8080

The addresses are the ones written in the deploy files (:func:`deployed_servers` checks
that they agree). Each server start has its own log (``app2-1.log``, ``app2-2.log`` after
a restart), with ``--access-log`` on, so a test can tell which host served requests when.
Everything started here stops with the network.
"""

from __future__ import annotations

import re
import select
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ioreactor_tools.bench.cluster_load import ClusterLoadResult
from support.haproxy import HAProxy
from support.nginx import Nginx

if TYPE_CHECKING:
    from support.netns import Host, Network
    from support.processes import Process

TOPOLOGY = {
    "lb": "10.200.0.2",
    "app1": "10.200.0.11",
    "app2": "10.200.0.12",
    "app3": "10.200.0.13",
    "client": "10.200.0.100",
}
APPS = ("app1", "app2", "app3")
APP_PORT = 8080
FRONT_PORT = 80
DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
NGINX_SITE = DEPLOY / "nginx" / "ioreactor.conf"
HAPROXY_CONFIG = DEPLOY / "haproxy" / "ioreactor.cfg"
#: HAProxy's option for the PROXY protocol to the servers, in the deploy file.
SEND_PROXY = " send-proxy-v2"
#: What the test puts before the deploy file: Debian's global section has a chroot, a
#: user and a daemon mode a test cannot use; this one logs to stdout (the runner's log).
HAPROXY_GLOBAL = """\
global
    log stdout format raw local0 info
    maxconn 4096

"""
#: Seconds a stopping server keeps serving with /healthz at 503 (HAProxy's check takes
#: it out after two failed checks 500 ms apart), as in deploy/systemd's unit.
DRAIN_DELAY = 2.0
#: Seconds a server has to listen, and the load to announce its start.
SERVER_START_TIMEOUT = 20.0
LOAD_START_TIMEOUT = 20.0

_ACCESS_LINE = re.compile(r"ioreactor\.http\.access: .* \"(GET|POST|PUT|HEAD) ")


def deployed_servers(text: str) -> list[str]:
    """The ``address:port`` of every server line in a deploy file (nginx or HAProxy)."""
    return re.findall(r"^\s*server\s+(?:\w+\s+)?([\d.]+:\d+)", text, re.M)


def nginx_site() -> str:
    return NGINX_SITE.read_text()


def haproxy_config(*, proxy_protocol: bool) -> str:
    """The deploy file after the test's global section; without ``proxy_protocol`` the
    servers are reached in plain HTTP (the file's one ``send-proxy-v2`` removed)."""
    text = HAPROXY_CONFIG.read_text()
    if not proxy_protocol:
        if text.count(SEND_PROXY) != 1:
            raise AssertionError(f"{HAPROXY_CONFIG} should say{SEND_PROXY} exactly once")
        text = text.replace(SEND_PROXY, "")
    return HAPROXY_GLOBAL + text


@dataclass
class AppServer:
    """``ioreactor serve`` on one host; ``runs`` holds every start, the current last."""

    host: Host
    runs: list[Process] = field(default_factory=list)

    @property
    def process(self) -> Process:
        return self.runs[-1]

    def served(self, run: int = -1) -> int:
        """Requests in the access log of a start (the current one by default)."""
        return len(_ACCESS_LINE.findall(self.runs[run].output()))


class LoadRun:
    """The load generator running in the client host; :meth:`result` waits for it."""

    def __init__(self, process: Process, out: Path, start: float) -> None:
        self.process = process
        self.out = out
        #: CLOCK_MONOTONIC second its first request was due.
        self.start = start

    def sleep_until(self, offset: float) -> float:
        """Sleep until ``offset`` seconds into the load; that moment (monotonic)."""
        moment = self.start + offset
        time.sleep(max(0.0, moment - time.monotonic()))
        return time.monotonic()

    def result(self, timeout: float) -> ClusterLoadResult:
        status = self.process.wait(timeout)
        if status != 0 or not self.out.exists():
            raise AssertionError(f"the load failed ({status}):\n{self.process.output()}")
        return ClusterLoadResult.load(self.out)


class Cluster:
    """The hosts of :data:`TOPOLOGY` on ``network``: servers, a balancer, a client."""

    def __init__(
        self,
        network: Network,
        workdir: Path,
        balancer: str,
        *,
        proxy_protocol: bool = False,
        server_args: Sequence[str] = (),
    ) -> None:
        if balancer not in ("nginx", "haproxy"):
            raise ValueError(f"balancer: nginx or haproxy, not {balancer!r}")
        self.network = network
        self.workdir = workdir
        self.balancer = balancer
        self.proxy_protocol = proxy_protocol
        self.server_args = list(server_args)
        self.apps = {name: AppServer(network[name]) for name in APPS}
        self.front: Nginx | HAProxy | None = None

    def start_servers(self) -> None:
        for name in APPS:
            self.start_server(name, wait=False)
        for app in self.apps.values():
            app.host.wait_listening(APP_PORT, SERVER_START_TIMEOUT, app.process)

    def start_server(self, name: str, *, wait: bool = True) -> Process:
        """Start (or restart) ``ioreactor serve`` on host ``name``."""
        app = self.apps[name]
        argv = [sys.executable, "-m", "ioreactor", "serve", "--listen", f"0.0.0.0:{APP_PORT}"]
        argv += ["--workers", "1", "--access-log", "--drain-delay", str(DRAIN_DELAY)]
        argv += self.server_args
        log_path = self.workdir / f"{name}-{len(app.runs) + 1}.log"
        process = app.host.spawn(argv, log_path)
        app.runs.append(process)
        if wait:
            app.host.wait_listening(APP_PORT, SERVER_START_TIMEOUT, process)
        return process

    def start_balancer(self) -> Nginx | HAProxy:
        lb = self.network["lb"]
        workdir = self.workdir / self.balancer
        workdir.mkdir()
        front: Nginx | HAProxy
        if self.balancer == "nginx":
            front = Nginx(nginx_site(), workdir, [FRONT_PORT], host=lb)
        else:
            config = haproxy_config(proxy_protocol=self.proxy_protocol)
            front = HAProxy(config, workdir, [FRONT_PORT], host=lb)
        self.front = front.__enter__()
        return front

    def start_load(self, duration: float, *, rate: float = 300.0, conns: int = 6) -> LoadRun:
        """Start the load in the client host against the balancer."""
        out = self.workdir / "load.json"
        argv = [sys.executable, "-m", "ioreactor_tools.bench.cluster_load"]
        argv += [f"http://{TOPOLOGY['lb']}:{FRONT_PORT}", "--rate", str(rate)]
        argv += ["--conns", str(conns), "--duration", str(duration), "--out", str(out)]
        process = self.network["client"].spawn(
            argv, self.workdir / "load.log", stdout=subprocess.PIPE
        )
        assert process.popen.stdout is not None
        ready, _, _ = select.select([process.popen.stdout], [], [], LOAD_START_TIMEOUT)
        line = process.popen.stdout.readline().decode() if ready else ""
        if not line.startswith("start "):
            process.stop()
            raise AssertionError(f"the load did not start ({line!r}):\n{process.output()}")
        return LoadRun(process, out, float(line.split()[1]))

    def request(
        self, method: str, path: str, headers: dict[str, str] | None = None, body: bytes = b""
    ) -> tuple[int, dict[str, str], bytes]:
        """One request from the client host through the balancer: status, headers, body."""
        import http.client

        with self.network["client"].connect(TOPOLOGY["lb"], FRONT_PORT) as sock:
            conn = http.client.HTTPConnection(TOPOLOGY["lb"], FRONT_PORT, timeout=10)
            conn.sock = sock
            conn.request(method, path, body=body or None, headers=headers or {})
            response = conn.getresponse()
            answer = response.read()
            fields = {name.lower(): value for name, value in response.getheaders()}
            return response.status, fields, answer

    def stop(self) -> None:
        if self.front is not None:
            self.front.stop()
