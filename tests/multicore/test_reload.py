"""Zero-downtime reload (SIGHUP) and upgrade (SIGUSR2) of ``ioreactor serve``, under a
steady load that accounts for every request (keep-alive GETs and POSTs, bodies checked).

SIGHUP: the application module is imported again, a new worker starts for each one and
the old one retires once its replacement accepts -- with either dispatch, no connection
is refused and no request fails. SIGUSR2: a new supervisor starts from the program on
disk with the listening sockets inherited, and the old one retires and exits 0.
"""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path

import pytest

from ioreactor.multicore import DISPATCHES
from ioreactor.testing import wait_until
from support.cli_process import http_get, start_serve
from support.loopback_load import Load

APP = """\
from ioreactor.http import App, Response

VERSION = "{version}"
app = App()


@app.route("/version")
def version(request):
    return VERSION + "\\n"


@app.route("/")
def index(request):
    return "hello\\n"


@app.route("/echo", methods=["POST"])
def echo(request):
    return Response(request.body, content_type="application/octet-stream")
"""
RATE = 400.0
DURATION = 5.0


def write_app(directory: Path, version: str) -> None:
    (directory / "versioned.py").write_text(APP.format(version=version))


@pytest.mark.parametrize("dispatch", DISPATCHES)
@pytest.mark.timeout(90)
def test_sighup_reloads_the_code_under_load_without_a_failed_request(
    tmp_path: Path, dispatch: str
) -> None:
    write_app(tmp_path, "v1")
    server, port = start_serve(
        tmp_path, "versioned:app", "--workers", "2", "--dispatch", dispatch,
        "--drain-delay", "0.3", cwd=tmp_path,
    )  # fmt: skip
    with server:
        assert http_get(port, "/version") == (200, "v1\n")
        load = Load(tmp_path, port, duration=DURATION, rate=RATE)
        write_app(tmp_path, "v2")
        for reloads, moment in enumerate((1.5, 3.0), start=1):
            load.sleep_until(moment)
            server.proc.send_signal(signal.SIGHUP)
            server.wait_for(rf"(?s)(supervisor: reload done.*){{{reloads}}}")
        result = load.result()
        print(f"{dispatch}: {result.summary()}")
        assert len(result.records) >= RATE * DURATION * 0.9, result.summary()
        failed = result.failed()
        assert not failed, f"{result.outcomes(failed)}; first {failed[:5]}"
        assert http_get(port, "/version") == (200, "v2\n")  # the code was imported again
        log = server.log()
        assert len(re.findall(r"\(retired: reload\) exited with code 0", log)) == 4, log
        assert server.stop() == 0


@pytest.mark.timeout(90)
def test_a_reload_whose_code_does_not_import_keeps_the_running_workers(tmp_path: Path) -> None:
    write_app(tmp_path, "v1")
    server, port = start_serve(tmp_path, "versioned:app", "--workers", "1", cwd=tmp_path)
    with server:
        (tmp_path / "versioned.py").write_text("def broken(:\n")
        server.proc.send_signal(signal.SIGHUP)
        server.wait_for(r"reload failed, the running workers go on: .*importing versioned failed")
        assert http_get(port, "/version") == (200, "v1\n")
        assert server.stop() == 0


@pytest.mark.timeout(90)
def test_sigusr2_upgrades_the_supervisor_under_load_without_a_failed_request(
    tmp_path: Path,
) -> None:
    write_app(tmp_path, "v1")
    server, port = start_serve(
        tmp_path, "versioned:app", "--workers", "2", "--drain-delay", "0.3", cwd=tmp_path
    )
    successor = 0
    try:
        with server:
            load = Load(tmp_path, port, duration=DURATION, rate=RATE)
            write_app(tmp_path, "v2")
            load.sleep_until(1.5)
            server.proc.send_signal(signal.SIGUSR2)
            successor = int(server.wait_for(r"upgrading: new supervisor pid (\d+)").group(1))
            server.wait_for(rf"upgrade: the new supervisor \(pid {successor}\) serves")
            assert server.wait() == 0  # the old supervisor retired and exited
            result = load.result()
            print(result.summary())
            failed = result.failed()
            assert not failed, f"{result.outcomes(failed)}; first {failed[:5]}"
            assert len(result.records) >= RATE * DURATION * 0.9, result.summary()
            assert http_get(port, "/version") == (200, "v2\n")
            log = server.log()
            assert f"supervisor (pid {successor}) listening on" in log
            assert len(re.findall(r"\(retired: upgrade\) exited with code 0", log)) == 2
            os.kill(successor, signal.SIGTERM)  # not our child: its parent has exited
            assert wait_until(lambda: not os.path.exists(f"/proc/{successor}"))
            assert "supervisor: stopping 2 worker" in server.log()
    finally:
        if successor:
            try:
                os.kill(successor, signal.SIGKILL)
            except ProcessLookupError:
                pass
