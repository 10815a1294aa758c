"""The code in README.md and docs/*.md runs, and the transcripts are real output.

* Every block fenced ```` ```python ```` or ```` ```py ```` is a complete program: it runs
  as written (its fixed ports become 0, so a test never meets a server of the machine)
  and exits 0 within a minute; some documents also promise output, checked here.
* A block fenced ```` ```python fragment ```` is part of a larger program on purpose (a
  ``loop``, a ``handler`` assumed). It must compile, and the fragments are counted per
  document: a new one is a decision, not an accident.
* The transcripts are replayed against the current code: ``ioreactor serve web:app``
  and ``make run``'s ``curl`` session (headers, bodies, errors), and the heartbeat
  demo's lines, which must be what the programs log today.
"""

from __future__ import annotations

import http.client
import itertools
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ioreactor.build import describe, version
from ioreactor.testing import free_port
from support.server_process import wait_accepting

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
#: Fragments on purpose, per document (``run_server`` needs a handler and a signal to
#: stop; the keepalive lines show two calls of a program about something else).
FRAGMENTS = {
    "README.md": 1,
    "docs/heartbeat.md": 1,
    "docs/multicore.md": 1,
    "docs/websocket.md": 1,
    "docs/aio.md": 1,
    "docs/asgi.md": 1,
    "docs/tls.md": 1,
    "docs/wsgi.md": 1,
}
#: What running a document's blocks prints, in part.
PRINTS = {
    "README.md": ["200 user 42", "the protocol works"],
    "docs/heartbeat.md": ["echoed: b'HELLO'"],
    "docs/http.md": ["/users/7?full=1 200", "user 7, query", "'report\\n'", "'first\\nlater\\n'"],
    "docs/sockets.md": [
        "port 70000 is out of range",
        "[Errno 111] Connection refused",
        "rejected: 1",
        "socket file left behind: False",
    ],
}
FENCE = re.compile(r"^```([^\n]*)\n(.*?)^```", re.S | re.M)
TIMEOUT = 60.0


@dataclass(frozen=True)
class Block:
    document: str
    line: int
    info: str
    code: str

    @property
    def is_python(self) -> bool:
        return self.info.split()[:1] in (["python"], ["py"])

    @property
    def is_fragment(self) -> bool:
        return self.info.split()[1:] == ["fragment"]


def blocks() -> Iterator[Block]:
    for path in DOCUMENTS:
        text = path.read_text()
        for match in FENCE.finditer(text):
            yield Block(
                str(path.relative_to(ROOT)),
                text.count("\n", 0, match.start()) + 1,
                match.group(1).strip(),
                match.group(2),
            )


BLOCKS = list(blocks())
PYTHON = [b for b in BLOCKS if b.is_python]


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    code = re.sub(r"(127\.0\.0\.1|0\.0\.0\.0):\d+", r"\1:0", code)  # no fixed ports
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=TIMEOUT, cwd=ROOT
    )


def test_every_python_block_is_a_program_or_a_counted_fragment() -> None:
    assert {b.info for b in PYTHON} <= {"python", "py", "python fragment"}
    fragments: dict[str, int] = {}
    for block in PYTHON:
        if block.is_fragment:
            fragments[block.document] = fragments.get(block.document, 0) + 1
            compile(block.code, f"{block.document}:{block.line}", "exec")
    assert fragments == FRAGMENTS
    assert sum(not b.is_fragment for b in PYTHON) >= 15


@pytest.mark.parametrize(
    "document", sorted({b.document for b in PYTHON if not b.is_fragment}), ids=str
)
def test_the_python_blocks_of_a_document_run_as_written(document: str) -> None:
    printed = ""
    for block in PYTHON:
        if block.document == document and not block.is_fragment:
            done = run_python(block.code)
            assert done.returncode == 0, f"{document}:{block.line}\n{done.stderr}"
            printed += done.stdout
    for words in PRINTS.get(document, []):
        assert words in printed, printed


# -- transcripts ---------------------------------------------------------------------------


def sessions(block: Block) -> list[tuple[str, list[str]]]:
    """A console transcript as (command, the lines it printed)."""
    session: list[tuple[str, list[str]]] = []
    for line in block.code.splitlines():
        if line.startswith("$ "):
            session.append((line[2:], []))
        else:
            session[-1][1].append(line)
    return session


def curl(command: str, port: int) -> str:
    """What the ``curl`` of a transcript prints, for the options the transcripts use."""
    args = shlex.split(command)[1:]
    include, body, headers = False, None, {}
    url = args.pop()
    while args:
        option = args.pop(0)
        if option == "-i":
            include = True
        elif option == "-s":
            pass
        elif option == "--data-binary":
            body = args.pop(0)
        elif option == "-H":
            name, _, value = args.pop(0).partition(": ")
            headers[name] = value
        else:
            raise AssertionError(f"the transcript's curl uses {option}: teach this test")
    path = "/" + url.split("/", 3)[3]
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("POST" if body else "GET", path, body=body, headers=headers)
        reply = conn.getresponse()
        text = reply.read().decode()
        if include:
            head = [f"HTTP/1.1 {reply.status} {reply.reason}"]
            head += [f"{name}: {value}" for name, value in reply.getheaders()]
            text = "\n".join(head) + "\n\n" + text
        return text
    finally:
        conn.close()


def block_after(document: str, first_line: str) -> tuple[Block, Block]:
    """The block of ``document`` that starts with ``first_line`` and the one after it."""
    mine = [b for b in BLOCKS if b.document == document]
    for block, following in itertools.pairwise(mine):
        if block.code.startswith(first_line):
            return block, following
    raise AssertionError(f"{document} has no block starting with {first_line!r}")


@pytest.mark.parametrize("module", ["web", "api"])
def test_the_serve_your_own_app_transcripts(tmp_path: Path, module: str) -> None:
    """The native App's transcript and the FastAPI one (an ASGI application)."""
    app, console = block_after("README.md", f"# {module}.py")
    (tmp_path / f"{module}.py").write_text(app.code)
    port, server = free_port(), None
    try:
        for command, expected in sessions(console):
            command = command.replace("8000", str(port))
            if command.startswith("curl "):
                assert curl(command, port).splitlines() == expected, command
                continue
            argv = [sys.executable, "-m", "ioreactor", *shlex.split(command)[1:]]
            if command.endswith(" &"):  # in the background, printing to the same terminal
                server_log = (tmp_path / "server.log").open("wb")
                server = subprocess.Popen(
                    argv[:-1], cwd=tmp_path, stdout=server_log, stderr=subprocess.STDOUT
                )
                wait_accepting(port, server)
                continue
            done = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=60)
            printed = (done.stdout + done.stderr).replace(str(tmp_path), "/home/me/proj")
            if command == "ioreactor --version":
                # The README shows a normal install's line; this run may be either build.
                assert printed.splitlines() == [describe()]
                assert expected == [f"ioreactor {version()} (compiled)"]
                continue
            assert printed.splitlines() == expected, command
    finally:
        if server is not None:
            server.send_signal(signal.SIGTERM)
            assert server.wait(TIMEOUT) == 0
    assert (tmp_path / "server.log").read_text() == "", "the transcript shows no server output"


def test_the_make_run_transcript() -> None:
    console = next(b for b in BLOCKS if b.code.startswith("$ curl -i http://127.0.0.1:8080/"))
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "ioreactor", "serve", "--listen", f"127.0.0.1:{port}"],
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_accepting(port, server)
        for command, expected in sessions(console):
            got = curl(command.replace("8080", str(port)), port).splitlines()
            date = re.compile(r"Date: \w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d GMT")
            assert [date.sub("Date", line) for line in got] == [
                date.sub("Date", line) for line in expected
            ], command
    finally:
        server.send_signal(signal.SIGTERM)
        assert server.wait(TIMEOUT) == 0


# -- the heartbeat demo ----------------------------------------------------------------------

#: A transcript line: which terminal, then exactly what the program logged there.
DEMO_LINE = re.compile(
    r"(?P<who>server|client)  (?P<line>\d\d:\d\d:\d\d\.\d{3} (INFO|WARNING) ioreactor[.\w]*: .+)"
    r"|shell   \d\d:\d\d:\d\d\.\d{3} --- .+"
)
DEMO_BLOCKS = [b for b in BLOCKS if b.code.startswith(("server  ", "client  "))]


def shape(line: str) -> str:
    """A log line with its numbers (times, ports, seqs, durations) replaced, and the
    reason a connection closed cut (a stopped peer's end may or may not have been written
    to when it resumes: EOF or EPIPE is the kernel's timing)."""
    return re.sub(r"\d+(\.\d+)?", "N", re.sub(r" closed: .*", " closed", line))


def demo_shapes(tmp_path: Path) -> set[str]:
    """What serve and connect log today: a ping exchange, the server stopped until the
    client declares it dead and reconnects, resumed, then killed while the client
    retries. Every kind of line of the documented demo."""
    port = str(free_port())
    flags = ["--interval", "0.2", "--misses", "2"]
    logs = {role: tmp_path / f"{role}.log" for role in ("server", "client")}

    def start(*args: str, log: Path) -> subprocess.Popen[bytes]:
        with log.open("ab") as out:
            return subprocess.Popen(
                [sys.executable, "-m", "ioreactor", "heartbeat", *args, *flags],
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def wait_for(role: str, pattern: str, count: int = 1) -> None:
        deadline = time.monotonic() + TIMEOUT
        while len(re.findall(pattern, logs[role].read_text(), re.M)) < count:
            assert time.monotonic() < deadline, f"{pattern!r} not in {logs[role].read_text()}"
            time.sleep(0.02)

    opened = r"connection from \(.*\)$"
    server = start("serve", "--listen", f"127.0.0.1:{port}", log=logs["server"])
    wait_for("server", "heartbeat server on")
    client = start("connect", "--connect", f"127.0.0.1:{port}", log=logs["client"])
    try:
        wait_for("client", "pong seq=1")
        server.send_signal(signal.SIGSTOP)
        wait_for("client", "reconnecting in")
        wait_for("client", "connected to", 2)  # the stopped server's kernel accepts it
        server.send_signal(signal.SIGCONT)
        wait_for("server", "closed")
        wait_for("server", opened, 2)
        client.send_signal(signal.SIGSTOP)
        wait_for("server", "is dead")
        client.send_signal(signal.SIGCONT)
        wait_for("client", "answered")
        wait_for("server", opened, 3)
        server.send_signal(signal.SIGTERM)
        assert server.wait(TIMEOUT) == 0
        wait_for("client", "retry 1")
    finally:
        for proc in (server, client):
            proc.send_signal(signal.SIGCONT)
            proc.kill()
            proc.wait()
    return {shape(line) for log in logs.values() for line in log.read_text().splitlines()}


@pytest.mark.timeout(2 * TIMEOUT)
def test_the_heartbeat_transcripts_are_what_the_programs_log(tmp_path: Path) -> None:
    assert {b.document for b in DEMO_BLOCKS} == {"README.md", "docs/heartbeat.md"}
    real = demo_shapes(tmp_path)
    for block in DEMO_BLOCKS:
        for line in block.code.splitlines():
            match = DEMO_LINE.fullmatch(line)
            assert match, f"{block.document}:{block.line}: not a demo line: {line!r}"
            if match.group("who"):
                assert shape(match.group("line")) in real, (
                    f"{block.document}: the programs no longer log {line!r}"
                )


def test_the_flask_transcript(tmp_path: Path) -> None:
    app, console = block_after("README.md", "# hello_flask.py")
    (tmp_path / "hello_flask.py").write_text(app.code)
    port, server = free_port(), None
    try:
        for command, expected in sessions(console):
            command = command.replace("8000", str(port))
            if command.startswith("curl "):
                assert curl(command, port).splitlines() == expected, command
                continue
            assert command.endswith(" &"), command  # the server, in the background
            argv = [sys.executable, "-m", "ioreactor", *shlex.split(command)[1:-1]]
            server_log = (tmp_path / "server.log").open("wb")
            server = subprocess.Popen(
                argv, cwd=tmp_path, stdout=server_log, stderr=subprocess.STDOUT
            )
            wait_accepting(port, server)
    finally:
        if server is not None:
            server.send_signal(signal.SIGTERM)
            assert server.wait(TIMEOUT) == 0
    assert server is not None
    assert (tmp_path / "server.log").read_text() == "", "the transcript shows no server output"


# -- the layout ----------------------------------------------------------------------------


def layout_section() -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index("\n## Layout\n")
    end = text.find("\n## ", start + 1)
    return text[start:] if end < 0 else text[start:end]


def test_the_layout_names_every_directory_and_every_framework_module() -> None:
    """README's layout section matches the tree: each package directory of src/ (the
    framework's and the tools'), each module of the framework, each top-level directory
    in the checkout."""
    layout = layout_section()
    src = ROOT / "src"
    missing = []
    for directory in sorted(p for p in src.rglob("*") if (p / "__init__.py").exists()):
        if f"{directory.name}/" not in layout:
            missing.append(str(directory.relative_to(ROOT)))
    for module in sorted((src / "ioreactor").rglob("*.py")):
        if module.name not in ("__init__.py", "__main__.py") and module.name not in layout:
            missing.append(str(module.relative_to(ROOT)))
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True)
    if tracked.returncode == 0:  # in a git checkout: the directories it tracks
        tops = {line.split("/")[0] for line in tracked.stdout.splitlines() if "/" in line}
        missing += [
            f"{top}/" for top in sorted(tops) if not top.startswith(".") and f"{top}/" not in layout
        ]
    assert not missing, f"README's layout section does not name: {missing}"
