"""The connection handler that speaks HTTP: one per server, shared by all its loops."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from ioreactor.http.date import DATE
from ioreactor.http.headers import encode_field
from ioreactor.http.limits import Limits
from ioreactor.http.protocol import HttpProtocol, receive, receive_read
from ioreactor.http.response import OCTET_FIELD, TEXT_FIELD
from ioreactor.http.sweep import ConnectionSweep
from ioreactor.net.handlers import Handler

if TYPE_CHECKING:
    from ioreactor.http.app import App
    from ioreactor.loop.event_loop import EventLoop
    from ioreactor.net.connection import TcpConnection


#: Texts of at most this many bytes have their whole response cached (per second).
TEXT_CACHE_BODY = 256
#: At most this many of them (a handler returning ever new texts fills it once a second).
TEXT_CACHE_ENTRIES = 64


class HttpHandler(Handler):
    """Gives each connection an :class:`HttpProtocol` and each loop a :class:`ConnectionSweep`.

    Safe to share between the loops of a multi-loop server: per-connection state lives in
    ``conn.context`` and per-loop state in the sweep of that loop.
    """

    def __init__(self, app: App, limits: Limits | None = None, *, access_log: bool = False):
        self.app = app
        self.router = app.router
        self.limits = limits if limits is not None else Limits()
        self.access_log = access_log
        self.server_line = encode_field("Server", app.server_name)
        #: A head's fields beyond which it is refused (431), counted as on_header keeps
        #: them: name and value, flat.
        self.max_raw_fields = 2 * self.limits.max_headers
        #: Reads at most this large cannot hold a head over the header limit: a field
        #: counts 1 byte more than its shortest form on the wire (``name:value\r\n``).
        self.small_read = self.limits.max_header_bytes - self.limits.max_headers
        #: The ``200 OK`` head of a text response up to the Content-Length value, for the
        #: current Date, and the whole keep-alive responses of short texts built with it:
        #: replaced together, as one tuple, by :meth:`tick` when the second changes.
        self._text: tuple[bytes, dict[str, bytes]] = (b"", {})
        #: The cache of ``_text``, for the lookup on every text response.
        self.text_cache: dict[str, bytes] = self._text[1]
        #: The same head for an ``application/octet-stream`` body (a handler's ``bytes``).
        self.octet_prefix = b""
        self._prefix_date = b""
        self.tick()
        self._sweeps: dict[EventLoop, ConnectionSweep] = {}
        self._lock = threading.Lock()

    def tick(self) -> None:
        """Refresh the cached Date (and what is built from it); each new second calls it."""
        DATE.refresh()
        line = DATE.line
        if line is not self._prefix_date:
            self._prefix_date = line
            prefix = b"HTTP/1.1 200 OK\r\n%s%s%sContent-Length: " % (
                self.server_line,
                line,
                TEXT_FIELD,
            )
            # The tuple first: a lookup that misses the old cache builds with the new head.
            self._text = (prefix, {})
            self.text_cache = self._text[1]
            self.octet_prefix = prefix.replace(TEXT_FIELD, OCTET_FIELD)

    def text_response(self, text: str) -> bytes:
        """The whole keep-alive HTTP/1.1 ``200 OK`` response with ``text`` as its body.

        Short texts are kept until the Date changes, so a handler that returns the same
        text again costs one dict lookup (``text_cache``); loops on other threads may
        share the cache (each store is one dict operation under the GIL).
        """
        prefix, cache = self._text
        body = text.encode("utf-8", "surrogateescape")
        data = b"%s%d\r\n\r\n%s" % (prefix, len(body), body)
        if len(body) <= TEXT_CACHE_BODY and len(cache) < TEXT_CACHE_ENTRIES:
            cache[text] = data
        return data

    def octet_response(self, body: bytes) -> bytes:
        """The whole keep-alive HTTP/1.1 ``200 OK`` response with ``body`` as it is."""
        return b"%s%d\r\n\r\n%s" % (self.octet_prefix, len(body), body)

    def sweep_of(self, loop: EventLoop) -> ConnectionSweep:
        """The sweep of ``loop``, started on first use (call on that loop's thread)."""
        sweep = self._sweeps.get(loop)
        if sweep is None:
            with self._lock:
                sweep = self._sweeps.get(loop)
                if sweep is None:
                    sweep = self._sweeps[loop] = ConnectionSweep(
                        loop, self.limits.sweep_interval, self.tick
                    )
        return sweep

    def on_connection(self, conn: TcpConnection) -> None:
        protocol = HttpProtocol(conn, self)
        conn.context = protocol
        self.sweep_of(conn.loop).protocols.add(protocol)

    #: Parse a read in place, or what ``conn.input`` holds (module functions: one
    #: Python call per read).
    on_message = receive
    on_read = receive_read

    def on_eof(self, conn: TcpConnection) -> bool:
        protocol = conn.context
        return isinstance(protocol, HttpProtocol) and protocol.on_eof()

    def on_shutdown(self, conn: TcpConnection) -> None:
        protocol = conn.context
        if isinstance(protocol, HttpProtocol):
            protocol.shutdown()
        else:
            conn.close()

    def on_close(self, conn: TcpConnection) -> None:
        protocol = conn.context
        if isinstance(protocol, HttpProtocol):
            protocol.on_close()
            sweep = self._sweeps.get(conn.loop)
            if sweep is not None:
                sweep.protocols.discard(protocol)

    def close(self) -> None:
        """Stop every loop's sweep timer."""
        with self._lock:
            sweeps = list(self._sweeps.values())
            self._sweeps.clear()
        for sweep in sweeps:
            sweep.close()
