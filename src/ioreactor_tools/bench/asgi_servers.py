"""The ASGI servers ``ioreactor bench asgi`` compares, and how each is started.

The same applications (:mod:`ioreactor_tools.bench.asgi_apps`, ``asgi_fastapi``), four
servers, each with one worker process on the server core:

``ioreactor``  ``ioreactor serve --workers 0`` (ioreactor.aio, the native HTTP protocol)
``uvicorn``    uvicorn with uvloop and httptools (``--loop uvloop --http httptools``);
               its WebSocket implementation is the ``websockets`` library
``granian``    granian (Rust) ``--interface asgi --workers 1``
``hypercorn``  hypercorn ``-w 1`` on uvloop (``-k uvloop``), reported beside the others
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

#: The servers compared; the first is the one under test.
SERVERS = ("ioreactor", "uvicorn", "granian", "hypercorn")
#: Workload -> (the application, what the load speaks).
WORKLOADS = {
    "hello": ("ioreactor_tools.bench.asgi_apps:hello", "http"),
    "fastapi-json": ("ioreactor_tools.bench.asgi_fastapi:app", "http"),
    "websocket-echo": ("ioreactor_tools.bench.asgi_apps:ws_echo", "websocket"),
}
#: Which servers run the WebSocket workload (hypercorn's wsproto, reported beside).
WEBSOCKET_SERVERS = ("ioreactor", "uvicorn", "granian", "hypercorn")

_MODULES = {"uvicorn": "uvicorn", "granian": "granian", "hypercorn": "hypercorn"}


def _script(name: str) -> str:
    """An entry point installed beside this interpreter (the venv's), else on PATH."""
    beside = Path(sys.executable).with_name(name)
    return str(beside) if beside.exists() else (shutil.which(name) or name)


def unavailable(server: str, workload: str) -> str | None:
    """None if ``server`` can run ``workload`` here, else why not."""
    module = _MODULES.get(server)
    if module is not None and importlib.util.find_spec(module) is None:
        return f"{module} is not installed (pip install {module})"
    if workload == "fastapi-json" and importlib.util.find_spec("fastapi") is None:
        return "fastapi is not installed (pip install fastapi)"
    if server == "uvicorn" and importlib.util.find_spec("uvloop") is None:
        return "uvloop is not installed (pip install uvloop)"
    return None


def server_command(server: str, workload: str, port: int, host: str = "127.0.0.1") -> list[str]:
    """The command line that serves ``workload``'s application with ``server``."""
    app = WORKLOADS[workload][0]
    if server == "ioreactor":
        return [
            sys.executable, "-m", "ioreactor", "--log-level", "WARNING", "serve", app,
            "--interface", "asgi", "--workers", "0", "--listen", f"{host}:{port}",
        ]  # fmt: skip
    if server == "uvicorn":
        return [
            sys.executable, "-m", "uvicorn", app, "--host", host, "--port", str(port),
            "--loop", "uvloop", "--http", "httptools", "--ws", "websockets",
            "--no-access-log", "--log-level", "warning", "--workers", "1",
        ]  # fmt: skip
    if server == "granian":
        return [
            _script("granian"), "--interface", "asgi", "--workers", "1", "--host", host,
            "--port", str(port), "--no-access-log", "--log-level", "warning", app,
        ]  # fmt: skip
    if server == "hypercorn":
        return [
            _script("hypercorn"), "-w", "1", "-k", "uvloop", "-b", f"{host}:{port}",
            "--log-level", "warning", app,
        ]  # fmt: skip
    raise ValueError(f"unknown server {server!r}")
