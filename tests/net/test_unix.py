"""Unix-domain sockets: stream servers through TcpServer, socket files (stale replaced, live
never stolen, removed on close), clear errors, SO_PEERCRED."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from net_support import fd_count

from ioreactor.echo import EchoHandler
from ioreactor.net.acceptor import open_listener
from ioreactor.net.buffer import Buffer
from ioreactor.net.client import TcpClient
from ioreactor.net.connection import TcpConnection
from ioreactor.net.handlers import DatagramHandler, Handler
from ioreactor.net.server import TcpServer
from ioreactor.net.udp import udp_server
from ioreactor.net.unix import (
    PeerCredentials,
    UnixSocket,
    bind_unix,
    check_peer,
    open_unix_socket,
    peer_credentials,
    probe,
)
from ioreactor.testing import LoopThread

TIMEOUT = 10.0
IS_ROOT = os.geteuid() == 0
NOBODY = 65534


def _abstract() -> str:
    return f"@ioreactor-test-{uuid.uuid4().hex}"


def _crashed_server(path: str, socktype: int = socket.SOCK_STREAM) -> None:
    """Leave a socket file behind the way a killed process does: closed, never unlinked."""
    sock = socket.socket(socket.AF_UNIX, socktype)
    sock.bind(path)
    if socktype == socket.SOCK_STREAM:
        sock.listen()
    sock.close()


def _echo_once(sockaddr: str, payload: bytes) -> bytes:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.settimeout(TIMEOUT)
        client.connect(sockaddr)
        client.sendall(payload)
        data = b""
        while len(data) < len(payload):
            chunk = client.recv(65536)
            assert chunk, "server closed early"
            data += chunk
    return data


@pytest.fixture
def loop_thread_any() -> Iterator[LoopThread]:
    with LoopThread() as lt:
        yield lt


# -- stream servers and clients: TcpServer/TcpClient on a unix:// address ------------------


@pytest.mark.parametrize("where", ["path", "abstract"])
def test_tcp_server_serves_a_unix_address(
    loop_thread: LoopThread, tmp_path: Path, where: str
) -> None:
    name = f"{tmp_path}/echo.sock" if where == "path" else _abstract()
    lt = loop_thread
    server = lt.call(lambda: TcpServer(lt.loop, f"unix://{name}", EchoHandler()).start())
    sockaddr = "\0" + name[1:] if where == "abstract" else name
    payload = os.urandom(200_000)
    assert _echo_once(sockaddr, payload) == payload
    lt.call(server.close)
    if where == "path":
        assert not os.path.exists(name), "the socket file outlived its server"


def test_tcp_client_connects_to_a_unix_server(loop_thread_any: LoopThread, tmp_path: Path) -> None:
    lt = loop_thread_any
    path = f"{tmp_path}/c.sock"

    class Collect(Handler):
        got = b""

        def on_connection(self, conn: TcpConnection) -> None:
            conn.send(b"ping over unix")

        def on_message(self, conn: TcpConnection, buffer: Buffer) -> None:
            Collect.got += buffer.read_all()

    server = lt.call(lambda: TcpServer(lt.loop, f"unix://{path}", EchoHandler()).start())
    client = lt.call(lambda: TcpClient(lt.loop, f"unix://{path}", Collect(), retry=False).connect())
    assert lt.wait_until(lambda: Collect.got == b"ping over unix", TIMEOUT)
    lt.call(client.close)
    lt.call(server.close)


# -- socket files ---------------------------------------------------------------------------


@pytest.mark.parametrize("close", ["close", "stop_accepting"])
def test_socket_file_removed_when_the_server_closes(
    loop_thread_any: LoopThread, tmp_path: Path, close: str
) -> None:
    lt = loop_thread_any
    path = f"{tmp_path}/gone.sock"
    server = lt.call(lambda: TcpServer(lt.loop, f"unix://{path}", EchoHandler()).start())
    assert os.path.exists(path)
    lt.call(getattr(server, close))
    assert not os.path.exists(path)


def test_datagram_socket_file_removed_on_close(loop_thread_any: LoopThread, tmp_path: Path) -> None:
    lt = loop_thread_any
    path = f"{tmp_path}/d.sock"
    endpoint = lt.call(udp_server, lt.loop, f"unix-dgram://{path}", DatagramHandler())
    assert os.path.exists(path)
    lt.call(endpoint.close)
    assert not os.path.exists(path)


@pytest.mark.parametrize("socktype", [socket.SOCK_STREAM, socket.SOCK_DGRAM])
def test_stale_socket_file_is_replaced(tmp_path: Path, socktype: int) -> None:
    path = f"{tmp_path}/stale.sock"
    _crashed_server(path, socktype)
    assert probe(path, socktype) == "stale"
    with open_unix_socket(path, socktype) as sock:
        if socktype == socket.SOCK_STREAM:
            sock.listen()
        assert sock.bound_path == path
        assert probe(path, socktype) != "stale"  # the file is the new, live socket
    assert not os.path.exists(path)


def test_stale_file_replaced_for_a_server(loop_thread_any: LoopThread, tmp_path: Path) -> None:
    lt = loop_thread_any
    path = f"{tmp_path}/crashed.sock"
    _crashed_server(path)
    server = lt.call(lambda: TcpServer(lt.loop, f"unix://{path}", EchoHandler()).start())
    assert _echo_once(path, b"fresh") == b"fresh"
    lt.call(server.close)


@pytest.mark.parametrize("socktype", [socket.SOCK_STREAM, socket.SOCK_DGRAM])
def test_live_socket_is_never_stolen(tmp_path: Path, socktype: int) -> None:
    path = f"{tmp_path}/live.sock"
    with open_unix_socket(path, socktype) as live:
        if socktype == socket.SOCK_STREAM:
            live.listen()
        before = fd_count()
        with pytest.raises(OSError, match="a live server is listening on it; not replacing"):
            open_unix_socket(path, socktype)
        assert fd_count() == before
        assert live.getsockname() == path and os.path.exists(path)
        if socktype == socket.SOCK_STREAM:
            assert _echo_probe_accepted(live)


def _echo_probe_accepted(live: socket.socket) -> bool:
    """The probe's own connection is in the live server's backlog: it was a real connect."""
    live.settimeout(TIMEOUT)
    conn, _ = live.accept()
    conn.close()
    return True


def test_live_socket_of_the_other_type_is_not_stolen(tmp_path: Path) -> None:
    path = f"{tmp_path}/mixed.sock"
    with (
        open_unix_socket(path, socket.SOCK_DGRAM),
        pytest.raises(OSError, match="a live socket of another type"),
    ):
        open_unix_socket(path, socket.SOCK_STREAM)


def test_live_server_with_a_full_backlog_is_not_stolen(tmp_path: Path) -> None:
    path = f"{tmp_path}/busy.sock"
    with open_unix_socket(path) as live:
        live.listen(0)
        clients = []
        try:
            for _ in range(8):  # fill the backlog: further connects would block
                c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                c.setblocking(False)
                clients.append(c)
                if c.connect_ex(path) != 0:
                    break
            with pytest.raises(OSError, match="a live server is listening on it"):
                open_unix_socket(path)
        finally:
            for c in clients:
                c.close()


def test_abstract_name_in_use() -> None:
    name = _abstract()
    with open_unix_socket(name), pytest.raises(OSError, match="abstract name is in use"):
        open_unix_socket(name)


def test_a_file_that_is_not_a_socket_is_never_replaced(tmp_path: Path) -> None:
    path = tmp_path / "data.txt"
    path.write_text("precious")
    with pytest.raises(FileExistsError, match="exists and is not a socket; refusing to replace"):
        open_unix_socket(str(path))
    assert path.read_text() == "precious"


@pytest.mark.skipif(not IS_ROOT, reason="creating a file owned by another uid needs root")
def test_a_socket_file_of_another_user_is_never_replaced(tmp_path: Path) -> None:
    path = f"{tmp_path}/theirs.sock"
    _crashed_server(path)
    os.chown(path, NOBODY, NOBODY)
    before = fd_count()
    with pytest.raises(PermissionError, match=f"belongs to uid {NOBODY}, not to this process"):
        open_unix_socket(path)
    assert fd_count() == before and os.path.exists(path)


def test_missing_directory_is_named(tmp_path: Path) -> None:
    before = fd_count()
    with pytest.raises(FileNotFoundError, match=f"directory {tmp_path}/nope does not exist"):
        open_listener(socket.AF_UNIX, f"{tmp_path}/nope/x.sock")
    assert fd_count() == before


def test_reuse_port_on_a_unix_listener_is_a_clear_error(tmp_path: Path) -> None:
    before = fd_count()
    with pytest.raises(ValueError, match="SO_REUSEPORT does not apply to Unix sockets"):
        open_listener(socket.AF_UNIX, f"{tmp_path}/rp.sock", reuse_port=True)
    assert fd_count() == before and not os.path.exists(f"{tmp_path}/rp.sock")


def test_replace_stale_can_be_refused(tmp_path: Path) -> None:
    path = f"{tmp_path}/keep.sock"
    _crashed_server(path)
    with pytest.raises(OSError, match="socket file already exists"):
        open_unix_socket(path, replace_stale=False)


@pytest.fixture
def shared_dir() -> Iterator[str]:
    """A directory every uid can see into but only its owner may write."""
    path = tempfile.mkdtemp(prefix="ioreactor-unix-")
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _in_child_as_other_user(fn: Callable[[], str]) -> str:
    """Run ``fn`` in a forked child, as uid nobody when we are root; return what it returns.

    A fork, not a new interpreter: uid nobody may not be able to read this Python's install.
    """
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        code = 0
        try:
            os.close(r)
            if IS_ROOT:
                os.setgroups([])
                os.setgid(NOBODY)
                os.setuid(NOBODY)
            os.write(w, fn().encode())
        except BaseException as exc:
            os.write(w, f"child failed: {exc!r}".encode())
            code = 1
        os._exit(code)
    os.close(w)
    with os.fdopen(r, "rb") as pipe:
        out = pipe.read().decode()
    os.waitpid(pid, 0)
    return out


def test_permission_denied_names_directory_and_uid(shared_dir: str) -> None:
    if not IS_ROOT:
        os.chmod(shared_dir, 0o555)  # now not even we may create files in it

    def bind() -> str:
        try:
            open_unix_socket(shared_dir + "/x.sock")
        except PermissionError as exc:
            return str(exc)
        return "no error"

    message = _in_child_as_other_user(bind)
    uid = NOBODY if IS_ROOT else os.geteuid()
    assert message.startswith(
        f"[Errno 13] unix://{shared_dir}/x.sock: permission denied: uid {uid} may not "
        f"create files in {shared_dir} (owner uid {os.geteuid()}, mode dr"
    ), message


# -- who closes the file ----------------------------------------------------------------------


def test_a_forked_child_closing_its_copy_keeps_the_file(tmp_path: Path) -> None:
    path = f"{tmp_path}/parent.sock"
    with open_unix_socket(path) as sock:
        pid = os.fork()
        if pid == 0:  # pragma: no cover - child
            sock.close()
            os._exit(0)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert os.path.exists(path), "a forked child deleted its parent's socket file"
    assert not os.path.exists(path)


def test_a_replaced_file_is_not_removed_by_the_old_socket(tmp_path: Path) -> None:
    path = f"{tmp_path}/moved.sock"
    old = open_unix_socket(path)
    os.unlink(path)
    with open_unix_socket(path):  # a newer server took the path
        old.close()
        assert os.path.exists(path)


def test_bind_unix_on_a_plain_socket_does_not_own_the_file(tmp_path: Path) -> None:
    path = f"{tmp_path}/plain.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        bind_unix(sock, path)
    assert os.path.exists(path)


def test_unix_socket_dup_keeps_working(tmp_path: Path) -> None:
    with open_unix_socket(f"{tmp_path}/dup.sock") as sock, sock.dup() as copy:
        assert isinstance(copy, UnixSocket) and copy.bound_path is None


# -- SO_PEERCRED ------------------------------------------------------------------------------


def test_peer_credentials_are_the_connecting_process() -> None:
    a, b = socket.socketpair()
    with a, b:
        assert peer_credentials(b) == PeerCredentials(os.getpid(), os.getuid(), os.getgid())
        assert check_peer(b, {os.getuid()})
        assert not check_peer(b, {os.getuid() + 1})


@pytest.mark.skipif(not IS_ROOT, reason="connecting as another uid needs root")
def test_peer_credentials_of_another_user(shared_dir: str) -> None:
    path = f"{shared_dir}/cred.sock"
    with open_unix_socket(path) as listener:
        os.chmod(path, 0o777)
        listener.listen()
        listener.settimeout(TIMEOUT)

        def connect() -> str:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
                client.connect(path)
            return "connected"

        # SO_PEERCRED is recorded at connect(): it outlives the child.
        assert _in_child_as_other_user(connect) == "connected"
        conn, _ = listener.accept()
        with conn:
            assert peer_credentials(conn).uid == NOBODY
            assert not check_peer(conn, {0})
            assert check_peer(conn, {0, NOBODY})
