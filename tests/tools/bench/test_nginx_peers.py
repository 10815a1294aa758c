"""nginx as a peer of ``ioreactor bench http``: the server the benchmark starts (one
process, ``return 200 "Hello, World!"``) answers like ioreactor's ``GET /`` as far as
nginx allows, a tiny benchmark gives it a sane row and a verdict, and a missing nginx is
named with the package it needs. Needs Debian's nginx-light (``make system-deps``)."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from ioreactor.testing import free_port
from ioreactor_tools.bench.http_comparison import HTTP_SERVERS
from ioreactor_tools.bench.nginx_peers import NGINX_NEEDED, NGINX_PATHS, nginx_path
from ioreactor_tools.bench.pinning import ServerProcess
from ioreactor_tools.bench.report import BenchResult
from support.cli_process import run_cli
from support.http import GET, Response, read_responses
from support.nginx import nginx_program
from support.processes import child_pids

REPO = Path(__file__).resolve().parents[3]


def _two_responses(port: int) -> tuple[list[Response], bytes]:
    """Two pipelined ``GET /`` on one connection: both responses and the bytes read."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(GET * 2)
        reader, data = read_responses(sock, 2)
    return reader.responses, data


def _served(name: str, tmp_path: Path) -> tuple[list[Response], bytes, list[int]]:
    """Server ``name`` started as the benchmark starts it: two keep-alive responses, the
    bytes read, and the processes its own process forked."""
    port = free_port()
    command = HTTP_SERVERS[name](port, None, tmp_path / name)
    with ServerProcess(command, port=port) as server:
        responses, data = _two_responses(port)
        children = child_pids(server.pid)
    return responses, data, children


def test_nginx_answers_as_ioreactor_does_but_for_server_and_connection(tmp_path: Path) -> None:
    nginx_program()  # skips naming nginx-light when it is missing
    ours, our_bytes, _ = _served("ioreactor", tmp_path)
    theirs, their_bytes, children = _served("nginx", tmp_path)
    assert children == []  # the process the benchmark pins and measures is the one serving
    assert len(theirs) == 2 and len(ours) == 2  # kept alive across both requests
    assert (tmp_path / "nginx" / "nginx.conf").exists()
    for mine, its in zip(ours, theirs, strict=True):
        assert (its.status, its.body) == (mine.status, mine.body) == (200, b"Hello, World!")
        ours_by_name = {k.lower(): v for k, v in mine.headers}
        theirs_by_name = {k.lower(): v for k, v in its.headers}
        assert set(theirs_by_name) == {*ours_by_name, "connection"}
        assert theirs_by_name.pop("connection") == "keep-alive"
        assert (theirs_by_name.pop("server"), ours_by_name.pop("server")) == ("nginx", "ioreactor")
        del theirs_by_name["date"], ours_by_name["date"]
        assert theirs_by_name == ours_by_name  # Content-Type and Content-Length
    # each response: ioreactor's length, 4 bytes less for the Server value, 24 more for
    # "Connection: keep-alive\r\n"
    assert len(their_bytes) == len(our_bytes) + 2 * (24 - 4)


def test_a_tiny_bench_has_a_sane_nginx_row_and_verdict(tmp_path: Path) -> None:
    nginx_program()
    proc = run_cli(
        "bench",
        "http",
        "--servers",
        "ioreactor,nginx",
        "--conns",
        "20",
        "--duration",
        "1",
        "--warmup",
        "0.2",
        "--no-progress",
        "--out",
        str(tmp_path),
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (path,) = tmp_path.glob("http-*.json")
    rows = {r["name"]: r for r in json.loads(path.read_text())["results"]}
    assert set(rows) == {"ioreactor", "nginx"}
    nginx = BenchResult.from_dict(rows["nginx"])
    assert nginx.conns == 20 and nginx.error_count == 0
    assert nginx.ops > 100 and nginx.duration > 0.5  # tens of thousands here, unloaded
    assert 0 < nginx.cpu_us_per_op < 1000  # a few µs here; 1 ms per request is no server
    assert 0 < nginx.rss_bytes < 512 * 2**20
    assert str(nginx.extra["command"]).startswith(str(nginx_path()))
    assert "x nginx" in proc.stdout
    verdict = re.search(r"20 conns: ioreactor / nginx CPU per request = (\d+\.\d\d)", proc.stdout)
    assert verdict is not None and float(verdict.group(1)) > 0


def _without_nginx(argv: list[str]) -> list[str]:
    """``argv`` run in a mount namespace of its own where every place nginx is looked for
    is an empty tmpfs (the machine's nginx stays installed); skip when that cannot be made."""
    places = sorted(
        {str(Path(p).parent) for p in NGINX_PATHS}
        | {d for d in os.environ.get("PATH", "").split(os.pathsep) if Path(d, "nginx").exists()}
    )
    hide = " && ".join(f"mount -t tmpfs none {shlex.quote(d)}" for d in places if Path(d).is_dir())
    script = f'{hide} && exec "$@"'
    probe = ["unshare", "-m", "sh", "-c", script, "sh", "true"]
    if shutil.which("unshare") is None or subprocess.run(probe, capture_output=True).returncode:
        pytest.skip("needs unshare(1) and the right to mount a tmpfs in a mount namespace (root)")
    return ["unshare", "-m", "sh", "-c", script, "sh", *argv]


def test_a_requested_nginx_that_is_missing_is_named_with_its_package(tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "ioreactor", "bench", "http", "--servers", "ioreactor,nginx"]
    argv += ["--conns", "10", "--duration", "0.5", "--warmup", "0", "--out", str(tmp_path)]
    proc = subprocess.run(
        _without_nginx([*argv, "--no-progress"]), capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = " ".join(proc.stdout.split())  # the console wraps long lines
    assert f"skipping nginx: {NGINX_NEEDED}" in out  # when the run starts
    assert f"nginx: NOT MEASURED: {NGINX_NEEDED}" in out  # and with the verdicts
    assert "nginx-light" in NGINX_NEEDED and "make system-deps" in NGINX_NEEDED
    (path,) = tmp_path.glob("http-*.json")
    assert [r["name"] for r in json.loads(path.read_text())["results"]] == ["ioreactor"]
    makefile = (REPO / "Makefile").read_text()  # the target that installs what it names
    assert re.search(r"SYSTEM_PROGRAMS :=.*\bnginx:nginx-light\b", makefile)
