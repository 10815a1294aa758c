"""`ioreactor bench tls` in a tiny mode (every workload, every server this machine has),
its verdicts, and its peers: the uvloop TLS servers and nginx with the same certificate."""

from __future__ import annotations

import json
import shutil
import socket
import ssl
from pathlib import Path

import pytest

from ioreactor.testing import free_port
from ioreactor_tools.bench.nginx_peers import nginx_path
from ioreactor_tools.bench.pinning import ServerProcess
from ioreactor_tools.bench.report import BenchResult
from ioreactor_tools.bench.tls_bench import target_lines
from ioreactor_tools.bench.tls_peers import (
    make_certificate,
    nginx_command,
    tls_peer_command,
    unavailable,
)
from support.bench import workload_row
from support.cli_process import run_cli


def _row(name: str, workload: str, cpu_seconds: float, round_no: int) -> BenchResult:
    return workload_row(
        name, workload, cpu_seconds, round_no=round_no, conns=4, ops=1000, unit="handshake"
    )


def test_verdicts_name_each_workloads_baseline_and_target() -> None:
    rows = [
        _row("ioreactor", "handshake", 0.30, 0),
        _row("nginx", "handshake", 0.25, 0),
        _row("uvloop", "handshake", 0.28, 0),
    ]
    (line,) = target_lines(rows)
    assert line == ("handshake, 4: ioreactor / nginx server CPU = 1.20 (MISSES the target <= 1.10)")


def _get(port: int) -> bytes:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    raw = socket.create_connection(("127.0.0.1", port), timeout=20)
    with context.wrap_socket(raw, server_hostname="localhost") as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := sock.recv(4096):
            data += chunk
    return data


@pytest.mark.parametrize("peer", ["uvloop-https", "nginx"])
def test_the_peers_serve_https_with_the_benchmarks_certificate(peer: str, tmp_path: Path) -> None:
    if (reason := unavailable(peer)) is not None:
        pytest.skip(reason)
    cert = make_certificate(tmp_path)
    port = free_port()
    command = nginx_command(port, cert) if peer == "nginx" else tls_peer_command(peer, port, cert)
    with ServerProcess(command, port=port):
        reply = _get(port)
    assert reply.startswith(b"HTTP/1.1 200") and reply.endswith(b"Hello, World!")


def test_tiny_bench_runs_every_workload(tmp_path: Path) -> None:
    if shutil.which("wrk") is None or shutil.which("openssl") is None:
        pytest.skip("needs wrk and the openssl tool (Debian: apt-get install wrk openssl)")
    proc = run_cli(
        "bench",
        "tls",
        "--conns",
        "10",
        "--duration",
        "1",
        "--warmup",
        "0",
        "--handshake-clients",
        "2",
        "--bulk-mib",
        "16",
        "--out",
        str(tmp_path),
        timeout=240,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (path,) = tmp_path.glob("tls-*.json")
    results = json.loads(path.read_text())["results"]
    seen = {(r["extra"]["workload"], r["name"]) for r in results}
    servers = ["ioreactor"]
    if unavailable("uvloop-https") is None:
        servers.append("uvloop")
    for workload in ("keepalive", "handshake", "bulk"):
        for name in servers:
            assert (workload, name) in seen
    if nginx_path() is not None:
        assert ("handshake", "nginx") in seen and ("keepalive", "nginx") in seen
    assert all(r["ops"] > 0 and r["server_cpu_seconds"] > 0 for r in results)
    for workload in ("keepalive", "handshake", "bulk"):
        assert f"TLS {workload}" in proc.stdout
    assert "ioreactor / nginx server CPU" in proc.stdout or nginx_path() is None
