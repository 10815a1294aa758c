"""Running ``server_app.py`` in a subprocess (``support.server_process``) and talking to
it with a line-protocol client, for the multicore tests."""

from __future__ import annotations

import socket
from pathlib import Path

from support.server_process import ServerProcess

APP = Path(__file__).with_name("server_app.py")
#: Liveness bound for anything the tests wait for (generous: the machine is shared).
TIMEOUT = 30.0


class AppServer(ServerProcess):
    """``server_app.py`` (or another server ``script``) with the given flags (``--workers``
    among them); its log in ``tmp_path``."""

    def __init__(
        self, tmp_path: Path, *flags: str, name: str = "server", script: Path = APP
    ) -> None:
        if "--workers" not in flags:
            raise ValueError("give --workers explicitly")
        super().__init__(tmp_path, *flags, name=name, script=script)

    def connect(self) -> LineClient:
        return LineClient(self.port)


class LineClient:
    """A blocking line-protocol client."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._pending = b""

    def send(self, line: bytes) -> None:
        self.sock.sendall(line + b"\n")

    def readline(self) -> bytes:
        while b"\n" not in self._pending:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed by the server")
            self._pending += chunk
        line, _, self._pending = self._pending.partition(b"\n")
        return line

    def request(self, line: bytes) -> bytes:
        self.send(line)
        return self.readline()

    def pid(self) -> int:
        return int(self.request(b"pid"))

    @property
    def port(self) -> int:
        port: int = self.sock.getsockname()[1]
        return port

    def close(self) -> None:
        self.sock.close()
