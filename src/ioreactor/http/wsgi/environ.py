"""The PEP 3333 ``environ`` of a request, built on the pool thread that runs the app.

Data flow::

    server constants (ServerEnviron.base)  --copy-->  per connection (connection_environ):
        + wsgi.url_scheme, REMOTE_ADDR/PORT (the peer: the real client after a PROXY
          header), SERVER_NAME/PORT (the connection's local address)
    --copy per request (request_environ)--> + REQUEST_METHOD, SCRIPT_NAME, PATH_INFO,
          QUERY_STRING, SERVER_PROTOCOL, CONTENT_TYPE/LENGTH, HTTP_*, wsgi.input

``PATH_INFO`` is the target's path percent-decoded to bytes and read as latin-1 (PEP
3333's "bytes as str"), after ``SCRIPT_NAME`` (``--root-path``) is taken off its raw
form; a path outside the root path is not the application's (the dispatcher answers
404). Header fields become ``HTTP_*`` keys as gunicorn maps them: ``-`` becomes ``_``,
repeated fields are joined with ``,``, and a field whose name contains ``_`` is dropped
(``X_Forwarded_For`` must not pass for ``X-Forwarded-For``: RFC 9110 17.10).
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_to_bytes

from ioreactor.build import version

if TYPE_CHECKING:
    from ioreactor.http.request import Request
    from ioreactor.net.connection import TcpConnection

#: Header names seen (raw bytes) -> their environ key (None: dropped); the table starts
#: over when full, so a client sending ever new names costs only the mapping itself.
HEADER_KEY_ENTRIES = 512

_header_keys: dict[bytes, str | None] = {}


def header_key(name: bytes) -> str | None:
    """The environ key of a request header field (None: the field is dropped)."""
    key = _header_keys.get(name)
    if key is not None or name in _header_keys:
        return key
    text = name.decode("latin-1").upper()
    if "_" in text:
        key = None
    elif text == "CONTENT-TYPE" or text == "CONTENT-LENGTH":
        key = text.replace("-", "_")
    else:
        key = "HTTP_" + text.replace("-", "_")
    if len(_header_keys) >= HEADER_KEY_ENTRIES:
        _header_keys.clear()
    _header_keys[name] = key
    return key


class ServerEnviron:
    """What every request of one server shares (module docstring)."""

    __slots__ = ("base", "root_path")

    def __init__(
        self,
        *,
        root_path: str = "",
        multithread: bool = True,
        multiprocess: bool = False,
        file_wrapper: Any = None,
    ) -> None:
        #: ``SCRIPT_NAME``: where the application is mounted ("" or "/a/b", no slash at
        #: the end).
        self.root_path = root_path.rstrip("/")
        self.base: dict[str, Any] = {
            "wsgi.version": (1, 0),
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": multithread,
            "wsgi.multiprocess": multiprocess,
            "wsgi.run_once": False,
            "wsgi.input_terminated": True,
            "SERVER_SOFTWARE": f"ioreactor/{version()}",
            "SCRIPT_NAME": self.root_path,
        }
        if file_wrapper is not None:
            self.base["wsgi.file_wrapper"] = file_wrapper

    def connection_environ(self, conn: TcpConnection, peer: Any, *, tls: bool) -> dict[str, Any]:
        """The keys one connection's requests share: scheme, client and server address."""
        environ = self.base.copy()
        environ["wsgi.url_scheme"] = "https" if tls else "http"
        if isinstance(peer, tuple):
            environ["REMOTE_ADDR"] = str(peer[0])
            environ["REMOTE_PORT"] = str(peer[1])
        else:  # a Unix-domain peer: its path, often empty
            environ["REMOTE_ADDR"] = (
                peer.decode("latin-1") if isinstance(peer, bytes) else str(peer or "")
            )
        local = conn.local_address()
        if isinstance(local, tuple):
            environ["SERVER_NAME"] = str(local[0])
            environ["SERVER_PORT"] = str(local[1])
        else:  # a Unix-domain listener: no port; the path says where
            environ["SERVER_NAME"] = (
                local.decode("latin-1") if isinstance(local, bytes) else str(local or "")
            )
            environ["SERVER_PORT"] = ""
        return environ


def path_info(target: str, root_path: str) -> str | None:
    """``PATH_INFO`` of a request target (latin-1 text of the decoded bytes), or None when
    the path lies outside ``root_path``."""
    raw, _, _ = target.partition("?")
    if raw[:1] != "/" and raw != "*":
        # absolute-form (a proxy's request): scheme://authority/path
        _scheme, sep, rest = raw.partition("://")
        slash = rest.find("/") if sep else -1
        raw = rest[slash:] if slash >= 0 else "/"
    if root_path:
        if raw == root_path:
            raw = ""
        elif raw.startswith(root_path) and raw[len(root_path)] == "/":
            raw = raw[len(root_path) :]
        else:
            return None
    if "%" in raw:
        # The target arrived as latin-1 text of its bytes; its escapes decode to bytes,
        # which PEP 3333 passes on as latin-1 text too.
        return unquote_to_bytes(raw.encode("latin-1")).decode("latin-1")
    return raw


def request_environ(
    connection: dict[str, Any], request: Request, path: str, body: Any
) -> dict[str, Any]:
    """The whole environ of ``request`` (``path``: its :func:`path_info`; ``body``: the
    ``wsgi.input`` object)."""
    environ = connection.copy()
    environ["REQUEST_METHOD"] = request.method
    environ["PATH_INFO"] = path
    environ["QUERY_STRING"] = request.query
    environ["SERVER_PROTOCOL"] = "HTTP/1.1" if request.version == "1.1" else "HTTP/1.0"
    environ["wsgi.input"] = body
    keys = _header_keys
    for name, value in request.headers.raw:
        key = keys.get(name)
        if key is None:
            key = header_key(name)
            if key is None:
                continue
        text = value.decode("latin-1")
        if key in environ and key[0] == "H":  # a repeated field: joined, as gunicorn does
            environ[key] = environ[key] + "," + text
        else:
            environ[key] = text
    return environ
