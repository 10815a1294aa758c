"""nginx as a benchmark peer: Debian's nginx (``nginx-light`` is enough) answering every
request with ``Hello, World!`` from ``return 200``, over plain HTTP or TLS.

::

    nginx_command(directory, port[, certificate]) -> directory/nginx.conf written
        -> [nginx, -p, directory, -c, nginx.conf, -e, error.log] (start it pinned)

One process listens and serves: ``daemon off`` (it stays the child the benchmark
started), ``master_process off`` and ``worker_processes 1``, so the pid a benchmark pins
and reads its CPU time for in ``/proc`` is the process that answers. Access log off,
errors (``crit`` and worse: an ``accept()`` out of descriptors is among them) to
``directory/error.log``, the pid file and every temp path in ``directory``. Keep-alive
connections are never closed by count or idle time, as with the other peers.

The response is ioreactor's ``GET /`` as closely as nginx allows: status line,
``Server: nginx`` (``server_tokens off``; ioreactor says ``Server: ioreactor``), ``Date``,
``Content-Type: text/plain; charset=utf-8``, ``Content-Length: 13``, the same body, and a
``Connection: keep-alive`` that nginx always adds to a kept HTTP/1.1 response (ioreactor
sends none): 169 bytes against ioreactor's 149.

Descriptors: ``worker_rlimit_nofile`` is applied by worker processes only, and with
``master_process off`` there is none, so nginx keeps the ``RLIMIT_NOFILE`` it inherits;
:func:`nginx_command` raises this process's soft limit to the hard one first (as the
benchmarks do before starting any server), and ``worker_connections`` is
:data:`WORKER_CONNECTIONS`.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from ioreactor.net.sockopt import raise_nofile_limit
from ioreactor_tools.bench.http_peers import BODY
from ioreactor_tools.bench.peers import PEER_BACKLOG

if TYPE_CHECKING:
    from ioreactor_tools.bench.tls_peers import Certificate

#: Where Debian installs nginx (``/usr/sbin`` is not on every user's PATH).
NGINX_PATHS = ("/usr/sbin/nginx", "/usr/local/sbin/nginx")
#: What to install when it is missing (the Makefile's ``system-deps`` target does, as root).
NGINX_NEEDED = (
    "nginx is not installed: the nginx peer needs Debian's nginx-light "
    "(apt-get install nginx-light, or `make system-deps` as root)"
)
#: Connections the one nginx process accepts at once (10,000 connections and headroom).
WORKER_CONNECTIONS = 20_000
#: The ``Content-Type`` of ioreactor's ``GET /`` (the echo application's hello route).
CONTENT_TYPE = "text/plain; charset=utf-8"


def nginx_path() -> str | None:
    """The nginx executable, or None."""
    found = shutil.which("nginx")
    if found:
        return found
    return next((p for p in NGINX_PATHS if Path(p).exists()), None)


def nginx_unavailable() -> str | None:
    """None if nginx can run here, else what it needs."""
    return NGINX_NEEDED if nginx_path() is None else None


def nginx_config(directory: Path, port: int, certificate: Certificate | None = None) -> str:
    """The whole ``nginx.conf``: one process on 127.0.0.1:``port``, its files in
    ``directory``, TLS with ``certificate`` when given."""
    listen = f"127.0.0.1:{port}{' ssl' if certificate else ''} backlog={PEER_BACKLOG}"
    tls = (
        f"""
        ssl_certificate {certificate.certfile};
        ssl_certificate_key {certificate.keyfile};
        ssl_protocols TLSv1.2 TLSv1.3;"""
        if certificate
        else ""
    )
    return f"""\
daemon off;
master_process off;
worker_processes 1;
error_log {directory}/error.log crit;
pid {directory}/nginx.pid;
events {{ worker_connections {WORKER_CONNECTIONS}; }}
http {{
    access_log off;
    server_tokens off;
    client_body_temp_path {directory}/body;
    proxy_temp_path {directory}/proxy;
    fastcgi_temp_path {directory}/fastcgi;
    uwsgi_temp_path {directory}/uwsgi;
    scgi_temp_path {directory}/scgi;
    keepalive_requests 1000000000;
    keepalive_timeout 3600s;
    server {{
        listen {listen};{tls}
        location / {{
            default_type "{CONTENT_TYPE}";
            return 200 "{BODY.decode()}";
        }}
    }}
}}
"""


def nginx_command(directory: Path, port: int, certificate: Certificate | None = None) -> list[str]:
    """Write ``directory/nginx.conf`` (:func:`nginx_config`) and return the command that
    runs nginx with it in the foreground; the caller removes ``directory`` afterwards."""
    nginx = nginx_path()
    if nginx is None:
        raise RuntimeError(NGINX_NEEDED)
    raise_nofile_limit()  # inherited: worker_rlimit_nofile has no effect without a master
    directory.mkdir(parents=True, exist_ok=True)
    conf = directory / "nginx.conf"
    conf.write_text(nginx_config(directory, port, certificate))
    return [nginx, "-p", str(directory), "-c", str(conf), "-e", str(directory / "error.log")]
