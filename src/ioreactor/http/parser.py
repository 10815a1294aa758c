"""HTTP/1.1 request parsing: the httptools glue, every input limit, the smuggling defences.

Data flow::

    a read (at most FEED_SLICE bytes, in place) --RequestParser.feed--> llhttp (httptools)
        --> ParserCallbacks: on_url, on_header, on_headers_complete, on_body,
            on_message_complete --> this feed's events, in order:

        Request   a request; complete (``body == b""``), or a head whose body follows
                  (``body is None``) as ...
        bytes     ... body chunks (chunked coding removed), then
        End       the end of that request's body (``End.request``)
        CONTINUE  the client waits for ``100 Continue`` before it sends the body
        HttpError the input is refused (always the last event: parsing has stopped)

The parser runs no application code: it turns bytes into events, and the connection
(:mod:`ioreactor.http.protocol`) hands them to its dispatcher once ``feed_data`` has
returned. Parsing stops for good after a request that ends the connection (it asked to
close, or was the last one allowed) and after an error: llhttp would otherwise read the
bytes behind them, which are not ours to interpret (request smuggling). An ASGI or WSGI
server uses the parser as it is (only the dispatcher differs). An ``Upgrade`` request is
the connection's last HTTP request (``upgrading``): llhttp stops at its end and reports
the offset of the new protocol's first byte (``upgraded_at``), where a hand-over (a
WebSocket after ``101``) takes the input from; a dispatcher that does not switch answers
it with ``Connection: close``.

Two ways through a head. A *plain* head -- GET and the other methods without a body
but HEAD and CONNECT, keep-alive HTTP/1.1 without a ``Connection`` field, none of
``Content-Length``, ``Transfer-Encoding``, ``Expect``, ``Upgrade``, exactly one ``Host``,
the head within one read no larger than ``max_header_bytes - max_headers`` (so within
the header limit) -- is a complete request: its :class:`Request` is built slot by slot
with the fields kept flat, and a target seen before (no query, nothing escaped) is
taken from a per-loop table instead of being decoded again. Every other head takes the
*general* path, which checks everything: the header block size, the framing fields
(``Content-Length`` vs ``Transfer-Encoding``, transfer codings, the body limit), the
version, ``Expect``, ``Upgrade``, the ``Host`` count (RFC 9112 3.2).

Limits (all in :class:`~ioreactor.http.limits.Limits`): the target (414), the number of
fields (431, per field) and the header block (431, when the head completes on the general
path); a head split across reads is bounded by the bytes fed since it began (httptools
joins a field split across reads before it calls on_header); the body (413, from
``Content-Length`` or as chunks arrive) and the body phase's bytes on the wire (chunk
extensions, which llhttp skips without a limit: CVE-2024-22019 in Node.js).
"""

from __future__ import annotations

import logging
import sys
import weakref
from typing import TYPE_CHECKING, Final, cast

import httptools

from ioreactor.http.errors import HttpError
from ioreactor.http.request import (
    HTTP_11,
    NO_PARAMS,
    Request,
    incoming,
    new_request,
    split_target,
)

if TYPE_CHECKING:
    from ioreactor.http.limits import Limits
    from ioreactor.loop.event_loop import EventLoop

log = logging.getLogger("ioreactor.http")

try:
    import cython
except ImportError:  # the pure build runs without Cython installed
    import ioreactor._cython as cython

# Cython drops the block under ``if not cython.compiled:``: the compiled build's names
# are C (parser.pxd).
if not cython.compiled:
    #: Where the parser stands between two feeds (``RequestParser.position``): between
    #: requests, inside a head (its target seen), inside a general-path request (its
    #: head parsed, its end not), or stopped for good. The same values as the first four
    #: phases of the connection (``HttpProtocol.phase``: IDLE, HEADERS, BODY, DONE),
    #: which copies it.
    IDLE = 0
    HEAD = 1
    BODY = 2
    STOPPED = 3

#: Input fed to the parser per call: larger reads are parsed a slice at a time, and the
#: connection may stop between slices (see ``HttpProtocol``): httptools cannot pause in
#: the middle of a feed, so a burst of small pipelined requests for large responses gets
#: at most one slice's worth of responses past the connection's high water mark.
FEED_SLICE = 4 * 1024
#: Raw targets (no query, nothing escaped) remembered per loop with their decoded string;
#: the table starts over when full, so a client sending ever new targets only costs the
#: decoding it would cost anyway.
TARGET_CACHE_ENTRIES = 256


class End:
    """The event that ends a request's body."""

    __slots__ = ("request",)

    def __init__(self, request: Request) -> None:
        self.request = request

    def __repr__(self) -> str:
        return f"<End {self.request!r}>"


class _Continue:
    __slots__ = ()

    def __repr__(self) -> str:
        return "CONTINUE"


#: The request whose head came last expects ``100 Continue`` before it sends its body.
CONTINUE: Final = _Continue()

#: What one feed produces, in order (see the module docstring).
Event = Request | bytes | End | _Continue | HttpError

#: Methods a plain head may have, as httptools names them -> the Request's string.
_PLAIN_METHODS = {
    m.encode(): sys.intern(m) for m in ("GET", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "TRACE")
}
GET: Final = _PLAIN_METHODS[b"GET"]
_METHODS = {**_PLAIN_METHODS, b"HEAD": "HEAD", b"CONNECT": "CONNECT"}
#: The fields of a head without any (shared, never changed).
_NO_FIELDS: list[bytes] = []
#: The field names the parser itself must look at, and their lengths (a length check is
#: cheaper than lower(), and most fields fail it).
_SPECIAL_FIELDS = frozenset(
    {b"expect", b"upgrade", b"connection", b"content-length", b"transfer-encoding"}
)
_SPECIAL_LENGTHS = frozenset(len(name) for name in _SPECIAL_FIELDS)
#: The initial of the special field of each length (they differ), indexed by length: a
#: field of a special length whose initial is not that one (User-Agent, Accept, Cookie,
#: Referer...) is passed over without lower().
_SPECIAL_INITIALS = bytes(
    next((name[0] for name in _SPECIAL_FIELDS if len(name) == n), 0)
    for n in range(max(_SPECIAL_LENGTHS) + 1)
)
#: The two httptools accessors every head asks, unbound: a call without the method
#: lookup ``parser.get_method()`` makes each time.
_get_method = httptools.HttpRequestParser.get_method
_should_keep_alive = httptools.HttpRequestParser.should_keep_alive


class _StopParsing(Exception):
    """Raised from a parser callback: the request just parsed is the connection's last."""


def _parser_error(exc: httptools.HttpParserError) -> HttpError:
    message = str(exc)
    if "HTTP version" in message:
        return HttpError(505, message, close=True)
    return HttpError(400, message or "Bad Request", close=True)


class RequestParser:
    """The request side of one connection: bytes in, events out (module docstring)."""

    # Slots in the order of use on the plain path, the hot ones first: an object's slots
    # lie in that order, so a request touches as few cache lines of it as it can (it
    # counts with thousands of connections, when the parser is rarely in cache).
    __slots__ = (  # noqa: RUF023  (order of use, not of name)
        "events",
        "callbacks",
        "position",
        "careful",
        "llhttp",
        "url",
        "raw",
        "hosts",
        "requests_left",
        "peer",
        "head_fed",
        "request",
        "body_size",
        "body_fed",
        "upgrading",
        "upgraded_at",
    )

    def __init__(self, limits: Limits, loop: EventLoop, peer: object) -> None:
        self.peer = peer
        #: The callbacks the httptools parser calls, and the limits, shared by the
        #: connections of a loop with the same limits (what is the same for all of them
        #: is not kept, nor looked for, in each).
        self.callbacks = loop_callbacks(loop, limits)
        self.llhttp = httptools.HttpRequestParser(self.callbacks)
        #: The events of the feed in progress (None until its first, and between feeds).
        self.events: list[Event] | None = None
        #: Requests this connection may still make (``max_requests_per_connection``); the
        #: last one is answered with ``Connection: close``.
        self.requests_left = limits.max_requests_per_connection
        #: The target of the head in progress (b"" between heads).
        self.url = b""
        #: The current head's fields, flat: name, value, name, value... (None until its
        #: first field: an idle connection holds no list, and a request's list is new).
        self.raw: list[bytes] | None = None
        #: IDLE, HEAD, BODY or STOPPED (see the constants).
        self.position = IDLE
        #: Bytes fed since a read first ended inside the current head; -1 while the head
        #: in progress (if any) began in the current read, 0 right after the read it
        #: began in.
        self.head_fed = -1
        #: Heads parsed from now on take the general path, which checks everything: set
        #: per feed when a head began in an earlier read or the read is larger than
        #: ``ParserCallbacks.small_read``, and by on_header for a field the parser must
        #: act on.
        self.careful = False
        #: ``Host`` fields in the current head (the plain path takes exactly one).
        self.hosts = 0
        #: The general-path request in progress.
        self.request: Request | None = None
        #: Body bytes of the request in progress (``max_body``).
        self.body_size = 0
        #: Bytes read while in its body: bounds what no other limit counts (chunk
        #: extensions, which llhttp skips without a limit).
        self.body_fed = 0
        #: The request in progress asks to switch protocols (``Upgrade`` with
        #: ``Connection: upgrade``): it is the connection's last HTTP request, answered
        #: with ``Connection: close`` unless the dispatcher hands the connection over.
        self.upgrading = False
        #: Where in the last feed's data the new protocol's bytes begin, once an upgrade
        #: request is complete (-1 before).
        self.upgraded_at = -1

    def __repr__(self) -> str:
        return f"<RequestParser {self.peer} requests_left={self.requests_left}>"

    @property
    def head_began(self) -> bool:
        """The last feed ended inside a head that began in it."""
        return self.position == HEAD and self.head_fed == 0

    def last_request(self) -> None:
        """The request in progress (or the next one) is the connection's last: it is
        answered with ``Connection: close`` and parsing stops after it."""
        self.requests_left = 0

    def feed(self, data: memoryview | bytes | bytearray, size: int = -1) -> list[Event] | None:
        """Parse ``data`` -- or its first ``size`` bytes (the loop's read buffer) -- in
        place (nothing is copied but what the parsers make of it) and return its
        events, in order (None: none)."""
        n = len(data) if size < 0 else size
        if size >= 0:
            data = memoryview(data)[:n]
        # Heads must be measured if one began in an earlier read or this read is large.
        callbacks = self.callbacks
        self.careful = self.position == HEAD or n > callbacks.small_read
        # No application code runs inside a feed, so feeds never nest: the loop's
        # callbacks are this parser's until the next feed sets them.
        callbacks.parser = self
        try:
            self.llhttp.feed_data(data)
        except httptools.HttpParserError as exc:
            self._failed(exc)
        except httptools.HttpParserUpgrade as exc:
            # llhttp stops at the end of an upgrade request: what follows is the new
            # protocol's, kept for the connection's successor (if the switch is made).
            self.upgraded_at = exc.args[0] if exc.args else n
        position = self.position
        if position == HEAD:
            self._bound_head(n)
        elif position == BODY:
            self._bound_body(n)
        events = self.events  # (self._take_events(), inlined for the pure build)
        self.events = None
        return events

    def _take_events(self) -> list[Event] | None:
        events = self.events
        self.events = None
        return events

    def _plain(self, method: str, url: bytes, fields: list[bytes], escaped: bool = True) -> None:
        """A plain request, complete at its head: made and emitted (see the module
        docstring). ``escaped`` False: the target has no query and nothing escaped."""
        targets = self.callbacks.targets
        target = targets.get(url)
        if target is not None:  # a target seen before that is its own path
            request = incoming(method, target, target, "", fields, self.peer)
        else:
            target = url.decode("latin-1")
            if escaped:
                path, query = split_target(target)
            else:
                path, query = target, ""
            request = incoming(method, target, path, query, fields, self.peer)
            if path == target:
                if len(targets) >= TARGET_CACHE_ENTRIES:
                    targets.clear()
                # Interned: the dispatcher's route table then finds it by identity.
                targets[url] = target = sys.intern(target)
                request.target = request.path = target
        self.requests_left -= 1
        self._emit(request)
        if self.requests_left <= 0:
            request.keep_alive = False
            self.position = STOPPED
        else:
            self.position = IDLE

    def _emit(self, event: Event) -> None:
        """Add an event to this feed's (the list is made by the first)."""
        if self.events is None:
            self.events = [event]
        else:
            self.events.append(event)

    def _refuse(self, err: HttpError) -> None:
        """Stop parsing; ``err`` is this feed's last event."""
        self.position = STOPPED
        self._emit(err)

    def _failed(self, exc: httptools.HttpParserError) -> None:
        if isinstance(exc, httptools.HttpParserCallbackError):
            cause = exc.__context__
            if isinstance(cause, HttpError):
                self._refuse(cause)
            elif not isinstance(cause, _StopParsing):
                log.error("%r: error in a parser callback", self, exc_info=cause)
                self._refuse(HttpError(500, "Internal Server Error", close=True))
        else:
            self._refuse(_parser_error(exc))

    def _bound_head(self, fed: int) -> None:
        """A read ended inside a request head (its target is known): bound the bytes the
        parser holds for it, not only the fields seen."""
        if self.head_fed < 0:
            self.head_fed = 0  # the head began in this read; the read's size bounds it
            return
        self.head_fed += fed
        limits = self.callbacks.limits
        if self.head_fed > limits.max_request_line + limits.max_header_bytes:
            self._refuse(HttpError(431, "Request Header Fields Too Large", close=True))

    def _bound_body(self, fed: int) -> None:
        """A read ended inside a request body: the bytes of the body phase may exceed
        ``max_body`` by at most ``max_body + max_header_bytes`` of chunk framing and
        extensions (a chunked body of small chunks doubles in size on the wire; the body
        itself is held to ``max_body`` by on_body)."""
        self.body_fed += fed
        limits = self.callbacks.limits
        if self.body_fed > 2 * limits.max_body + limits.max_header_bytes:
            self._refuse(HttpError(413, "Content Too Large", close=True))

    def _general_head(self, raw: list[bytes], url: bytes) -> None:
        """Every head the plain path does not take: checks it and emits its Request, now
        if a body follows, at its end otherwise."""
        self.head_fed = -1  # the next head begins in the read it is seen in
        parser = self.llhttp
        if self.careful and sum(map(len, raw)) + 2 * len(raw) > self.callbacks.max_header_bytes:
            raise HttpError(431, "Request Header Fields Too Large", close=True)
        method_raw = parser.get_method()
        method = _METHODS.get(method_raw) or method_raw.decode("ascii")
        keep_alive = parser.should_keep_alive()
        has_body = False
        if self.careful or not keep_alive or method == "CONNECT":
            version, keep_alive, has_body, send_continue = self._inspect(raw, method, keep_alive)
        else:
            version = HTTP_11  # as on the plain path
            send_continue = False
        hosts = self.hosts
        self.hosts = 0
        if hosts > 1 or (hosts == 0 and version == "1.1"):
            # RFC 9112 3.2: a 1.1 request names exactly one host; several are ambiguous
            # (which one does a proxy in front of us route by?).
            raise HttpError(400, f"{hosts} Host fields: exactly one is required", close=True)
        target = url.decode("latin-1")
        path, query = split_target(target)
        request = incoming(method, target, path, query, raw, self.peer, version)
        request.keep_alive = keep_alive
        self.request = request
        self.position = BODY
        self.body_size = 0
        self.body_fed = 0
        if has_body:
            request.body = None  # it follows as events
            if send_continue:
                self._emit(CONTINUE)
            self._emit(request)

    def _inspect(
        self, raw: list[bytes], method: str, keep_alive: bool
    ) -> tuple[str, bool, bool, bool]:
        """The less common heads: framing fields, Expect, Upgrade, HTTP/1.0.

        Returns the version, whether to keep the connection, whether a body follows and
        whether to send ``100 Continue``; raises HttpError for what must be refused.
        """
        length = 0
        chunked = False
        expect = None
        framing = False
        for i in range(0, len(raw), 2):
            name = raw[i]
            if len(name) in _SPECIAL_LENGTHS:
                lower = name.lower()
                value = raw[i + 1]
                if lower == b"content-length":
                    length = int(value)  # llhttp checked it: digits, one value, no TE
                elif lower == b"transfer-encoding":
                    if value.strip().lower() != b"chunked":
                        raise HttpError(501, "unsupported transfer coding", close=True)
                    chunked = True
                elif lower == b"expect":
                    expect = value
                elif lower == b"connection" or lower == b"upgrade":
                    framing = True
        if length > self.callbacks.max_body:
            raise HttpError(413, "Content Too Large", close=True)
        if keep_alive and not framing and method != "CONNECT":
            version = HTTP_11  # as on the plain path
        else:
            version = self.llhttp.get_http_version()
            if version != "1.1" and version != "1.0":
                raise HttpError(505, f"HTTP/{version} is not supported", close=True)
            if self.llhttp.should_upgrade():
                # The connection's last HTTP request: parsing stops after it, and it is
                # answered with Connection: close unless the dispatcher switches.
                self.upgrading = True
                keep_alive = False
            if chunked and version == "1.0":
                raise HttpError(400, "Transfer-Encoding in an HTTP/1.0 request", close=True)
        has_body = bool(length or chunked)
        send_continue = False
        if expect is not None:
            if expect.strip().lower() != b"100-continue":
                raise HttpError(417, "Expectation Failed", close=True)
            send_continue = version == "1.1" and has_body
        return version, keep_alive, has_body, send_continue

    def _complete_general(self) -> None:
        """on_message_complete of a request that took the general path."""
        self.position = IDLE
        self.raw = None  # the trailer fields of a chunked body, if any: ignored
        self.hosts = 0  # (a Host among them too)
        request = self.request
        if request is None:  # pragma: no cover - llhttp always completes a begun head
            return
        self.request = None
        self.requests_left -= 1
        if self.requests_left <= 0:
            request.keep_alive = False
        self._emit(End(request) if request.body is None else request)
        if self.upgrading:
            # llhttp pauses here by itself and reports where the request ended.
            self.position = STOPPED
        elif not request.keep_alive:
            self.position = STOPPED
            raise _StopParsing


class ParserCallbacks:
    """The httptools callbacks of every connection a loop serves with the same limits.

    httptools keeps the callbacks its protocol object has when the parser is made: with
    each connection's own methods, five bound method objects per connection, and a
    reference cycle through the parser. One set per loop serves every parser (312
    bytes fewer per idle connection): ``parser`` is the connection whose input is being
    parsed, set by each :meth:`RequestParser.feed` (feeds never nest: no application
    code runs inside one).

    Four calls per request, each as short as it can be: on_url, on_header (per field),
    on_headers_complete and on_message_complete (no on_message_begin: a request begins
    with its first on_url).
    """

    __slots__ = (
        "limits",
        "max_body",
        "max_header_bytes",
        "max_raw_fields",
        "max_request_line",
        "on_body",
        "on_header",
        "on_headers_complete",
        "on_message_complete",
        "on_url",
        "parser",
        "recent_target",
        "recent_url",
        "small_read",
        "targets",
    )

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.max_request_line = limits.max_request_line
        self.max_header_bytes = limits.max_header_bytes
        self.max_body = limits.max_body
        #: A head's fields beyond which it is refused (431), counted as on_header keeps
        #: them: name and value, flat.
        self.max_raw_fields = 2 * limits.max_headers
        #: Reads at most this large cannot hold a head over the header limit: a field
        #: counts 1 byte more than its shortest form on the wire (``name:value\r\n``).
        self.small_read = limits.max_header_bytes - limits.max_headers
        #: Only read while a feed runs, which sets it first.
        self.parser: RequestParser = cast("RequestParser", None)
        #: Raw targets seen on this loop that are their own path (no query, nothing
        #: escaped, origin form) -> that path as a string (TARGET_CACHE_ENTRIES).
        self.targets: dict[bytes, str] = {}
        #: The last target found in ``targets``, and its string: pipelined requests and
        #: a client's next request often repeat it (a compare instead of a hash).
        self.recent_url: bytes | None = None
        self.recent_target = ""
        # Bound once: httptools takes ``getattr(callbacks, name)``, which for a method
        # would make a new bound method for every parser.
        self.on_url = self.url
        self.on_header = self.header
        self.on_headers_complete = self.headers_complete
        self.on_body = self.body
        self.on_message_complete = self.message_complete

    def url(self, url: bytes) -> None:
        p = self.parser
        if p.url:  # the rest of a target split across reads
            url = p.url + url
        if len(url) > self.max_request_line:
            raise HttpError(414, "URI Too Long", close=True)
        p.url = url
        p.position = HEAD

    def header(self, name: bytes, value: bytes) -> None:
        p = self.parser
        raw = p.raw
        if raw is None:  # the head's first field (within any limit: max_headers >= 1)
            p.raw = [name, value]
        else:
            raw.append(name)
            raw.append(value)
            if len(raw) > self.max_raw_fields:
                raise HttpError(431, "Request Header Fields Too Large", close=True)
        n = len(name)
        if n == 4 and (name == b"Host" or name.lower() == b"host"):
            p.hosts += 1  # each HTTP/1.1 request needs exactly one (RFC 9112 3.2)
        elif (
            n in _SPECIAL_LENGTHS
            and name[0] | 0x20 == _SPECIAL_INITIALS[n]  # (an ASCII letter's lower case)
            and name.lower() in _SPECIAL_FIELDS
        ):
            p.careful = True  # the general path reads the fields

    def headers_complete(self) -> None:
        p = self.parser
        parser = p.llhttp
        raw = p.raw or _NO_FIELDS
        p.raw = None
        url = p.url
        p.url = b""
        method_raw = _get_method(parser)
        # GET compared first: cheaper than hashing the new bytes for the table.
        method = GET if method_raw == b"GET" else _PLAIN_METHODS.get(method_raw)
        if method is None or p.careful or p.hosts != 1 or not _should_keep_alive(parser):
            p._general_head(raw, url)
            return
        p.hosts = 0
        # The plain path. Keep-alive without a Connection field: HTTP/1.1. Neither
        # Content-Length nor Transfer-Encoding: no body, so the request is complete now
        # (on_message_complete follows at once). The head lay within one read no larger
        # than the header limit, so it is within that limit too.
        target: str | None
        if url == self.recent_url:  # the target of the head before (no hash, no lookup)
            target = self.recent_target
        else:
            target = self.targets.get(url)
            if target is not None:
                self.recent_url = url
                self.recent_target = target
        left = p.requests_left - 1
        if target is None or left <= 0:
            p._plain(method, url, raw)
            if p.position == STOPPED:
                raise _StopParsing
            return
        # A target seen before that is its own path, and not the connection's last
        # request: p._plain(), incoming() and p._emit(), inlined. The common request of
        # the pure build, which they cost 2,900 of 40,900 instructions (callgrind,
        # keep-alive GET /).
        if cython.compiled:
            request = Request.__new__(Request)  # (a C allocation)
        else:
            request = new_request(Request)  # (one attribute lookup fewer)
        request.method = method
        request.target = target
        request.path = target
        request.query = ""
        request.version = HTTP_11
        request._headers = raw
        request.body = b""
        request.peer = p.peer
        request.params = NO_PARAMS
        request.keep_alive = True
        p.requests_left = left
        events = p.events
        if events is None:
            p.events = [request]
        else:
            events.append(request)
        p.position = IDLE

    def body(self, chunk: bytes) -> None:
        p = self.parser
        # Only general-path requests have a body: Content-Length or Transfer-Encoding
        # sends a head there.
        size = p.body_size + len(chunk)
        if size > self.max_body:
            raise HttpError(413, "Content Too Large", close=True)
        p.body_size = size
        p._emit(chunk)

    def message_complete(self) -> None:
        p = self.parser
        if p.position == BODY:  # (a plain request was complete at its head)
            p._complete_general()


#: Each loop's callbacks, per limits (a loop parses one input at a time, on its own thread).
_LOOP_CALLBACKS: weakref.WeakKeyDictionary[EventLoop, dict[Limits, ParserCallbacks]] = (
    weakref.WeakKeyDictionary()
)


def loop_callbacks(loop: EventLoop, limits: Limits) -> ParserCallbacks:
    """The :class:`ParserCallbacks` of ``loop`` for ``limits`` (call on its thread)."""
    by_limits = _LOOP_CALLBACKS.get(loop)
    if by_limits is None:
        by_limits = _LOOP_CALLBACKS[loop] = {}
    callbacks = by_limits.get(limits)
    if callbacks is None:
        callbacks = by_limits[limits] = ParserCallbacks(limits)
    return callbacks
