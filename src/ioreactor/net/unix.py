"""Unix-domain socket files: binding safely, removing them on close, checking peers.

A Unix socket bound to a path leaves a file behind. Three rules make that safe:

* **Removed on close.** A :class:`UnixSocket` deletes the file it created when it
  closes, provided the file is still the one it bound (same device and inode: a newer
  server may have replaced it) and the closing process is the one that bound it (a forked
  worker closing its inherited copy must not delete the parent's file).
* **Stale files replaced, live ones never stolen.** A crashed run leaves its file; bind
  then fails with EADDRINUSE. :func:`bind_unix` probes the path with a non-blocking
  connect first: refused means nobody listens (stale: delete and bind again); accepted,
  or a full backlog, means a live server owns it, and binding fails with a message that
  says so. Files that are not sockets, or that belong to another user, are never
  touched. (FIXME: two servers starting at the same instant can both find the same stale
  file; the loser's bind then fails, it never steals the winner's socket.)
* **Clear errors.** A missing directory, a directory we may not write, a path owned by
  someone else: each names the path and what is wrong.

Access control: :func:`peer_credentials` reads ``SO_PEERCRED`` (pid, uid, gid of the
process that connected, as the kernel saw it at connect time: it cannot be forged);
:func:`check_peer` accepts or rejects a connection by uid.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import stat
import struct
from collections.abc import Collection
from dataclasses import dataclass

from ioreactor.net.address import Address

log = logging.getLogger("ioreactor.unix")

_UCRED = struct.Struct("3i")


class UnixSocket(socket.socket):
    """A Unix-domain socket that removes the file it bound when it closes."""

    __slots__ = ("_bound_file", "_bound_pid")

    def __init__(
        self,
        family: int = socket.AF_UNIX,
        type: int = socket.SOCK_STREAM,
        proto: int = 0,
        fileno: int | None = None,
    ) -> None:
        if family != socket.AF_UNIX:
            raise ValueError("UnixSocket is AF_UNIX only")
        super().__init__(family, type, proto, fileno)
        self._bound_file: tuple[str, int, int] | None = None
        self._bound_pid = 0

    @property
    def bound_path(self) -> str | None:
        """The socket file this socket created and will remove, if any."""
        return self._bound_file[0] if self._bound_file else None

    def _remember_file(self, path: str) -> None:
        st = os.stat(path)
        self._bound_file = (path, st.st_dev, st.st_ino)
        self._bound_pid = os.getpid()

    def close(self) -> None:
        bound, self._bound_file = self._bound_file, None
        if bound is not None and self._bound_pid == os.getpid():
            path, dev, ino = bound
            try:
                st = os.stat(path)
                if (st.st_dev, st.st_ino) == (dev, ino):
                    os.unlink(path)
            except OSError:
                pass  # already gone, or its directory is: nothing of ours left to remove
        super().close()


def open_unix_socket(
    address: Address | str, type: int = socket.SOCK_STREAM, *, replace_stale: bool = True
) -> UnixSocket:
    """A :class:`UnixSocket` bound to ``address`` (a ``unix://``-kind Address or a path)."""
    sock = UnixSocket(socket.AF_UNIX, type)
    try:
        bind_unix(sock, address, replace_stale=replace_stale)
    except BaseException:
        sock.close()
        raise
    return sock


def _display(address: Address | str) -> str:
    return str(address) if isinstance(address, Address) else f"unix://{address}"


def bind_unix(sock: socket.socket, address: Address | str, *, replace_stale: bool = True) -> None:
    """Bind ``sock`` to a Unix path (see the module docstring for the rules).

    ``address`` is an Address or a path (``@name`` for an abstract name). A
    :class:`UnixSocket` remembers the file so that closing it removes the file.
    """
    if isinstance(address, Address):
        if not address.is_unix:
            raise ValueError(f"{address} is not a Unix-domain address")
        path = address.path
    else:
        path = Address.unix(address).path
    shown = _display(address)
    if path.startswith("@"):
        try:
            sock.bind("\0" + path[1:])
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise OSError(
                    errno.EADDRINUSE, f"{shown}: the abstract name is in use by a live socket"
                ) from None
            raise
        return
    directory = os.path.dirname(path) or "/"
    try:
        sock.bind(path)
    except FileNotFoundError:
        raise FileNotFoundError(
            errno.ENOENT, f"{shown}: directory {directory} does not exist"
        ) from None
    except PermissionError:
        raise PermissionError(errno.EACCES, f"{shown}: {_why_not_writable(directory)}") from None
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise OSError(exc.errno, f"{shown}: {exc.strerror}") from None
        if not replace_stale:
            raise OSError(errno.EADDRINUSE, f"{shown}: the socket file already exists") from None
        _remove_if_stale(path, sock.type, shown)
        sock.bind(path)
    if isinstance(sock, UnixSocket):
        sock._remember_file(path)


def _why_not_writable(directory: str) -> str:
    euid = os.geteuid()
    try:
        st = os.stat(directory)
    except OSError:
        return f"permission denied: uid {euid} cannot reach directory {directory}"
    return (
        f"permission denied: uid {euid} may not create files in {directory} "
        f"(owner uid {st.st_uid}, mode {stat.filemode(st.st_mode)})"
    )


def _remove_if_stale(path: str, socktype: int, shown: str) -> None:
    """``path`` exists: delete it if it is our own dead socket, else raise saying why not."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return  # removed meanwhile: the caller's bind will tell
    if not stat.S_ISSOCK(st.st_mode):
        raise FileExistsError(
            errno.EEXIST, f"{shown}: the path exists and is not a socket; refusing to replace it"
        )
    euid = os.geteuid()
    if st.st_uid != euid:
        raise PermissionError(
            errno.EPERM,
            f"{shown}: the socket file belongs to uid {st.st_uid}, not to this process "
            f"(uid {euid}); refusing to replace it",
        )
    state = probe(path, socktype)
    if state != "stale":
        raise OSError(
            errno.EADDRINUSE,
            f"{shown}: {state}; not replacing its socket (stop it, or pick another path)",
        )
    log.warning("%s: replacing a stale socket file (nobody listens on it)", shown)
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def probe(path: str, socktype: int = socket.SOCK_STREAM) -> str:
    """Is a server behind the socket file ``path``? ``"stale"`` or a description of it.

    A non-blocking connect never waits: ECONNREFUSED means no socket is bound there any
    more; success, or EAGAIN (its backlog is full), means a live server; EPROTOTYPE
    means a live socket of the other type (stream vs datagram).
    """
    with socket.socket(socket.AF_UNIX, socktype) as sock:
        sock.setblocking(False)
        err = sock.connect_ex(path)
    if err == errno.ECONNREFUSED:
        return "stale"
    if err in (0, errno.EAGAIN, errno.EINPROGRESS):
        return "a live server is listening on it"
    if err == errno.EPROTOTYPE:
        return "a live socket of another type (stream/datagram) is bound to it"
    if err == errno.EACCES:
        raise PermissionError(
            errno.EACCES, f"unix://{path}: permission denied while probing the socket file"
        )
    raise OSError(err, f"unix://{path}: probing the socket file: {os.strerror(err)}")


@dataclass(frozen=True)
class PeerCredentials:
    """Who is at the other end of a Unix stream socket (SO_PEERCRED)."""

    pid: int
    uid: int
    gid: int


def peer_credentials(sock: socket.socket) -> PeerCredentials:
    """The connecting process's pid/uid/gid, as the kernel recorded them at connect()."""
    pid, uid, gid = _UCRED.unpack(
        sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
    )
    return PeerCredentials(pid, uid, gid)


def check_peer(sock: socket.socket, allowed_uids: Collection[int]) -> bool:
    """True if the peer's uid is allowed; logs a rejection with who it was."""
    try:
        cred = peer_credentials(sock)
    except OSError as exc:
        log.warning("rejecting a Unix peer: cannot read SO_PEERCRED: %s", exc)
        return False
    if cred.uid in allowed_uids:
        return True
    log.warning(
        "rejecting Unix peer pid %d uid %d gid %d on %s: uid not in allowed %s",
        cred.pid,
        cred.uid,
        cred.gid,
        _sockname(sock),
        sorted(allowed_uids),
    )
    return False


def _sockname(sock: socket.socket) -> str:
    try:
        name = sock.getsockname()
    except OSError:
        return "?"
    if isinstance(name, bytes):
        return "@" + os.fsdecode(name[1:])
    return str(name)
