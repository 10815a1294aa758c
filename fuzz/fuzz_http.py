"""Coverage-guided fuzzing of the HTTP request path with atheris (libFuzzer for Python).

Each input is split into a few reads (the split points come from the input itself) and
fed to a real :class:`~ioreactor.net.connection.TcpConnection` over a socketpair, on an
event loop this script spins, with the echo application and small limits. Then the
client half-closes. A crash is any of:

* an exception escaping the loop or logged at ERROR by ioreactor (a handler's own 500s
  are not errors here: the echo application has none);
* output that is not a stream of well-formed HTTP/1.1 responses (checked whole unless
  the input has a HEAD or 100-continue request, whose framing a response parser cannot
  know);
* a connection still open once the client has said all it will (the server must answer
  or close, never hang).

Run it with ``make fuzz`` (installs atheris into the venv), or
``python fuzz/fuzz_http.py [libFuzzer flags] [corpus dirs]``; without a corpus directory
it works in a temporary one seeded from ``fuzz/seeds``. Not part of ``make test``.
"""

from __future__ import annotations

import itertools
import logging
import os
import shutil
import socket
import sys
import tempfile
from pathlib import Path

import atheris

# The package first: with IOREACTOR_NO_EXTENSIONS=1 it puts a finder of the pure modules'
# sources in front of the import system, which must stand behind atheris's import hook
# (else the modules that have a compiled build load uninstrumented: no coverage).
import ioreactor  # noqa: F401  # isort: skip

with atheris.instrument_imports(include=["ioreactor"]):
    from ioreactor.http.echo_app import build_echo_app
    from ioreactor.http.handler import HttpHandler
    from ioreactor.http.limits import Limits
    from ioreactor.loop.event_loop import EventLoop
    from ioreactor.net.connection import TcpConnection

import httptools

SEEDS = Path(__file__).with_name("seeds")
LIMITS = Limits(max_request_line=512, max_header_bytes=2048, max_headers=20, max_body=4096)
#: Loop iterations after the client's FIN by which the connection must be gone.
SETTLE_ROUNDS = 50


class _Fail(logging.Handler):
    """Turns an ERROR logged by ioreactor into a crash of this input."""

    def emit(self, record: logging.LogRecord) -> None:
        raise AssertionError(f"ioreactor logged an error: {record.getMessage()}")


class _Responses:
    """Parses what the server sent; raises on anything that is not HTTP/1.1 responses."""

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.count = 0

    def on_message_complete(self) -> None:
        self.count += 1


LOOP = EventLoop(name="fuzz", slow_iteration=float("inf"))
HANDLER = HttpHandler(build_echo_app(), LIMITS)
logging.getLogger("ioreactor").addHandler(_Fail(logging.ERROR))
logging.getLogger("ioreactor").propagate = False


def drain(client: socket.socket, into: bytearray) -> bool:
    """Read what the server sent; True once it closed (EOF or reset)."""
    while True:
        try:
            chunk = client.recv(1 << 16)
        except BlockingIOError:
            return False
        except ConnectionResetError:
            return True
        if not chunk:
            return True
        into += chunk


def one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    cuts = sorted(fdp.ConsumeIntInRange(0, 512) for _ in range(fdp.ConsumeIntInRange(0, 4)))
    raw = fdp.ConsumeBytes(fdp.remaining_bytes())
    server_end, client = socket.socketpair()
    server_end.setblocking(False)
    client.setblocking(False)
    conn = TcpConnection(LOOP, server_end, ("fuzz", 0), HANDLER)
    conn.start()
    received = bytearray()
    closed = False
    try:
        points = [0, *[min(c, len(raw)) for c in cuts], len(raw)]
        for a, b in itertools.pairwise(points):
            if b > a and not closed:
                try:
                    client.sendall(raw[a:b])
                except (BrokenPipeError, ConnectionResetError, BlockingIOError):
                    closed = True
                for _ in range(3):
                    LOOP.run_once(0)
                closed = drain(client, received) or closed
        try:
            client.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        for _ in range(SETTLE_ROUNDS):
            if conn.closed:
                break
            LOOP.run_once(0)
            drain(client, received)
        drain(client, received)
        if not conn.closed:
            raise AssertionError(f"the connection outlived the client's FIN: {raw[:80]!r}")
        if received:
            if not received.startswith(b"HTTP/1.1 "):
                raise AssertionError(f"not an HTTP/1.1 response: {bytes(received[:80])!r}")
            if b"HEAD" not in raw and b"100-continue" not in raw.lower():
                # (a response parser cannot frame answers to HEAD: it does not know the
                # request was one; 100 Continue is an interim response it stops at)
                _Responses().parser.feed_data(bytes(received))
    finally:
        if not conn.closed:
            conn.force_close()
            LOOP.run_once(0)
        client.close()


def main() -> None:
    args = sys.argv[1:]
    if not any(not a.startswith("-") for a in args):
        work = Path(tempfile.mkdtemp(prefix="ioreactor-fuzz-"))
        corpus = work / "corpus"
        shutil.copytree(SEEDS, corpus)
        args = [*args, f"-artifact_prefix={work}{os.sep}", str(corpus)]
        print(f"corpus and crash artifacts in {work}", flush=True)
    atheris.Setup([sys.argv[0], *args], one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
