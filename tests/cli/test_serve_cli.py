"""`ioreactor serve MODULE:ATTR` serves the user's own application, as a real process.

Each test writes an application module into ``tmp_path``, runs ``ioreactor serve`` on it
and asks it with http.client; a module that cannot be served is one line naming what was
looked for and where, exit status 2, before any worker starts.
"""

from __future__ import annotations

import http.client
import signal
import socket
import textwrap
from pathlib import Path

import pytest

from support.cli_process import CliProcess, run_cli

APP = textwrap.dedent(
    """
    from ioreactor.http import App

    app = App(server_name="tests_app")

    @app.route("/")
    def hello(request):
        return "hello from tests_app"

    @app.route("/users/{id}")
    def user(request):
        return f"user {request.params['id']}"

    def create_app():
        made = App()
        made.add_route("/", lambda request: "made by the factory")
        return made

    not_an_app = {"routes": []}

    def wsgi_app(environ, start_response):
        body = f"{environ['SCRIPT_NAME']}|{environ['PATH_INFO']}|{environ['wsgi.multithread']}"
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [body.encode()]

    def wrapped(*args):  # a WSGI app behind a wrapper: its signature cannot say so
        return wsgi_app(*args)

    def broken_factory():
        return 1 / 0
    """
)
BANNER = r"on http://(\S+):(\d+) \(pid \d+\)"


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "project"
    directory.mkdir()
    (directory / "tests_app.py").write_text(APP)
    return directory


def get(host: str, port: int, path: str) -> tuple[int, str, str]:
    conn = http.client.HTTPConnection(host, port, timeout=10)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.getheader("Server") or "", response.read().decode()
    finally:
        conn.close()


@pytest.mark.parametrize("workers", ["0", "2"])
def test_serve_module_attr_from_app_dir(tmp_path: Path, app_dir: Path, workers: str) -> None:
    with CliProcess(
        tmp_path,
        "serve",
        "tests_app:app",
        "--app-dir",
        str(app_dir),
        "--listen",
        "127.0.0.1:0",
        "--workers",
        workers,
    ) as server:
        match = server.wait_for(r"tests_app:app \(native\) " + BANNER)
        port = int(match.group(2))
        if workers != "0":
            server.wait_for(r"supervisor \(pid \d+\) listening")
        assert get("127.0.0.1", port, "/") == (200, "tests_app", "hello from tests_app")
        assert get("127.0.0.1", port, "/users/7") == (200, "tests_app", "user 7")
        assert get("127.0.0.1", port, "/nope")[0] == 404
        assert server.stop(signal.SIGTERM) == 0, server.log()
    assert "Traceback" not in server.log()


def test_the_app_dir_defaults_to_the_current_directory_and_factory_builds_the_app(
    tmp_path: Path, app_dir: Path
) -> None:
    with CliProcess(
        tmp_path,
        "serve",
        "tests_app:create_app",
        "--factory",
        "--listen",
        "127.0.0.1:0",
        "--workers",
        "0",
        cwd=app_dir,
    ) as server:
        port = int(server.wait_for(BANNER).group(2))
        assert get("127.0.0.1", port, "/")[2] == "made by the factory"
        assert server.stop() == 0


def test_serving_options_apply_to_the_users_app(tmp_path: Path, app_dir: Path) -> None:
    static = tmp_path / "files"
    static.mkdir()
    (static / "a.txt").write_text("static text")
    with CliProcess(
        tmp_path,
        "serve",
        "tests_app:app",
        "--app-dir",
        str(app_dir),
        "--listen",
        "127.0.0.1:0",
        "--workers",
        "0",
        "--static",
        str(static),
        "--access-log",
        "--max-requests-per-connection",
        "1",
    ) as server:
        port = int(server.wait_for(BANNER).group(2))
        assert get("127.0.0.1", port, "/static/a.txt")[2] == "static text"
        server.wait_for(r"GET /static/a.txt")  # the access log
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            reply = b""
            while chunk := sock.recv(4096):  # --max-requests-per-connection 1: it closes
                reply += chunk
        assert b"Connection: close" in reply
        assert server.stop() == 0


@pytest.mark.skipif(not socket.has_ipv6, reason="needs IPv6")
def test_the_banner_brackets_an_ipv6_host(tmp_path: Path, app_dir: Path) -> None:
    try:
        socket.socket(socket.AF_INET6).bind(("::1", 0))
    except OSError:
        pytest.skip("needs an IPv6 loopback address (::1)")
    with CliProcess(tmp_path, "serve", "--listen", "[::1]:0", "--workers", "0") as server:
        match = server.wait_for(r"HTTP echo server on (http://\S+) \(pid")
        assert match.group(1).startswith("http://[::1]:"), match.group(0)
        assert server.stop() == 0


@pytest.mark.parametrize(
    ("spec", "extra", "said"),
    [
        ("no_such_module:app", [], ["no_such_module:app", "no module named 'no_such_module'"]),
        ("tests_app:nope", [], ["tests_app:nope", "no attribute 'nope'", "tests_app.py"]),
        ("tests_app:not_an_app", [], ["a dict, not an ioreactor.http.App", "tests_app.py"]),
        ("tests_app:create_app", [], ["a function, not an ioreactor.http.App", "--factory"]),
        ("tests_app:broken_factory", ["--factory"], ["ZeroDivisionError", "broken_factory()"]),
        ("tests_app:app", ["--factory"], ["--factory needs a callable", "an App"]),
    ],
)
def test_an_app_that_cannot_be_served_is_one_line_before_any_worker(
    app_dir: Path, spec: str, extra: list[str], said: list[str]
) -> None:
    done = run_cli("serve", spec, "--app-dir", str(app_dir), *extra, timeout=60)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("ioreactor: error: serve: ") and done.stderr.count("\n") == 1
    for words in [*said, f"app-dir {app_dir}"]:
        assert words in done.stderr, done.stderr
    assert "Traceback" not in done.stderr and "worker" not in done.stderr


def test_an_import_error_in_the_module_names_the_module_and_line(
    tmp_path: Path,
) -> None:
    (tmp_path / "broken.py").write_text("import json\nraise RuntimeError('no config')\n")
    done = run_cli("serve", "broken:app", "--app-dir", str(tmp_path), timeout=60)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1, done.stderr
    assert "importing broken failed: RuntimeError: no config at broken.py:2" in done.stderr


ASGI_APP = textwrap.dedent(
    """
    async def app(scope, receive, send):
        if scope["type"] != "http":
            raise RuntimeError("no lifespan here")
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"asgi"})

    def wsgi(environ, start_response):
        return [b"not asgi"]
    """
)


@pytest.mark.parametrize(
    ("extra", "said"),
    [
        (
            ["--interface", "native"],
            "app is a function, not an ioreactor.http.App; it is an ASGI application "
            "(--interface asgi)",
        ),
        (["--static", "."], "--static serves files for an ioreactor App"),
        (["--loops", "2"], "use --workers instead of --loops"),
    ],
)
def test_asgi_flags_that_do_not_apply_are_one_line(
    tmp_path: Path, extra: list[str], said: str
) -> None:
    (tmp_path / "asgi_app.py").write_text(ASGI_APP)
    done = run_cli("serve", "asgi_app:app", "--app-dir", str(tmp_path), *extra)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("ioreactor: error: serve: ") and done.stderr.count("\n") == 1
    assert said in done.stderr, done.stderr


def test_a_wsgi_callable_is_not_taken_for_asgi(tmp_path: Path) -> None:
    (tmp_path / "asgi_app.py").write_text(ASGI_APP)
    done = run_cli("serve", "asgi_app:wsgi", "--app-dir", str(tmp_path), "--interface", "asgi")
    assert done.returncode == 2
    assert "a function, not an ASGI application" in done.stderr, done.stderr


@pytest.mark.parametrize(("mode", "status"), [("on", 3), ("auto", 0)])
def test_lifespan_on_stops_an_app_that_does_not_speak_it(
    tmp_path: Path, mode: str, status: int
) -> None:
    (tmp_path / "asgi_app.py").write_text(ASGI_APP)
    with CliProcess(
        tmp_path, "serve", "asgi_app:app", "--app-dir", str(tmp_path), "--listen",
        "127.0.0.1:0", "--workers", "0", "--lifespan", mode,
    ) as server:  # fmt: skip
        if status == 0:
            host, port = server.wait_for(BANNER).groups()
            assert get(host, int(port), "/")[2] == "asgi"
            assert server.stop(signal.SIGTERM) == 0
        else:
            assert server.wait() == status
            assert "listening" not in server.log()


def test_a_wsgi_app_is_served_with_its_flags(tmp_path: Path, app_dir: Path) -> None:
    static = tmp_path / "files"
    static.mkdir()
    (static / "a.txt").write_text("static text")
    with CliProcess(
        tmp_path,
        "serve",
        "tests_app:wsgi_app",
        "--app-dir",
        str(app_dir),
        "--listen",
        "127.0.0.1:0",
        "--workers",
        "0",
        "--threads",
        "1",
        "--root-path",
        "/mount/",
        "--static",
        str(static),
    ) as server:
        port = int(server.wait_for(r"tests_app:wsgi_app \(wsgi\) " + BANNER).group(2))
        assert get("127.0.0.1", port, "/mount/x/y")[2] == "/mount|/x/y|False"
        assert get("127.0.0.1", port, "/elsewhere")[0] == 404
        assert get("127.0.0.1", port, "/static/a.txt")[2] == "static text"
        assert server.stop() == 0
    assert "Traceback" not in server.log()


def test_interface_names_the_kind_detection_cannot_see(tmp_path: Path, app_dir: Path) -> None:
    done = run_cli("serve", "tests_app:wrapped", "--app-dir", str(app_dir))
    assert done.returncode == 2 and "add --interface wsgi" in done.stderr, done.stderr
    with CliProcess(
        tmp_path,
        "serve",
        "tests_app:wrapped",
        "--interface",
        "wsgi",
        "--app-dir",
        str(app_dir),
        "--listen",
        "127.0.0.1:0",
        "--workers",
        "0",
    ) as server:
        port = int(server.wait_for(BANNER).group(2))
        assert get("127.0.0.1", port, "/p")[2] == "|/p|True"
        assert server.stop() == 0


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["tests_app:app", "--threads", "4"], "--threads applies to WSGI applications"),
        (["tests_app:app", "--stream-body"], "--stream-body applies to WSGI applications"),
        (
            ["tests_app:app", "--root-path", "/a"],
            "--root-path applies to WSGI and ASGI applications",
        ),
        (["tests_app:app", "--interface", "wsgi"], "--interface wsgi: app is an App, not a WSGI"),
        (["tests_app:wsgi_app", "--interface", "native"], "is a function, not an ioreactor"),
        (["--pool-timeout", "3"], "--pool-timeout needs MODULE:ATTR, a WSGI application"),
    ],
)
def test_flags_that_do_not_apply_are_refused(app_dir: Path, argv: list[str], said: str) -> None:
    where = ["--app-dir", str(app_dir)] if ":" in argv[0] else []
    done = run_cli("serve", *argv, *where)
    assert done.returncode == 2 and said in done.stderr, done.stderr
    assert done.stderr.count("\n") == 1


def test_the_interface_choices_are_the_loaders_kinds() -> None:
    from ioreactor.cli.serve import INTERFACES
    from ioreactor.http.app_loader import APP_KINDS

    assert ("auto", *(kind.name for kind in APP_KINDS)) == INTERFACES


def test_the_lifespan_choices_are_the_servers_modes() -> None:
    from ioreactor.cli import serve
    from ioreactor.http.asgi import lifespan

    assert serve.LIFESPAN_MODES == lifespan.LIFESPAN_MODES
