"""The compiled build's parser for the common request: a *plain* head, scanned in C.

Data flow (compiled build; the pure build gives every byte to llhttp)::

    a read --RequestParser.feed--> HeadScanner.scan at the start of the unparsed bytes
        --> a whole plain head: its method, target and field lines --> a Request
            (and the next head of the read is scanned)
        --> anything else (a byte it does not know, a framing field, a head that goes on
            in the next read): from there on llhttp parses, as it parses everything in
            the pure build

A plain head is the one the parser's plain path takes (see :mod:`ioreactor.http.parser`):
a method other than HEAD and CONNECT, an origin-form target, ``HTTP/1.1``, no
``Content-Length``, ``Transfer-Encoding``, ``Expect``, ``Upgrade`` or ``Connection``,
exactly one ``Host``, within the limits. The scanner takes a strict subset of what llhttp
takes, so that every head it accepts, llhttp would parse into the same request: CRLF
line ends only, the target's bytes from RFC 3986 (letters, digits and
``-._~!$&'()*+,;=:@/?%``), field names that are tokens followed at once by ``:``,
values of visible ASCII, spaces and tabs (leading ones dropped, trailing ones kept, as
llhttp does). Any other byte, anything longer than a limit, and any head the plain path
would not take sends that head to llhttp, which refuses what must be refused.

The scanner reads ``data[i]`` as a byte value: in the compiled build ``data`` is a
pointer into the read (``const unsigned char*``), in the pure build -- where only the
tests call it, to hold it against llhttp -- a ``bytes`` object.
"""

# Loops and comparisons are written as C wants them (they are C in the compiled build):
# ruff: noqa: SIM109, SIM110

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

try:
    import cython
except ImportError:  # the pure build runs without Cython installed
    import ioreactor._cython as cython

if TYPE_CHECKING:
    from ioreactor.http.limits import Limits

#: The plain methods, as they open a request line (with their space) and as the
#: Request's string; GET first (the common one).
PLAIN_METHODS: tuple[tuple[bytes, str], ...] = tuple(
    (m.encode() + b" ", sys.intern(m))
    for m in ("GET", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "TRACE")
)
#: What follows the target of a plain head.
VERSION_LINE = b" HTTP/1.1\r\n"

if not cython.compiled:  # (the compiled build's are C constants: plain_head.pxd)
    CR = 0x0D
    LF = 0x0A
    COLON = 0x3A
    QUESTION = 0x3F
    PERCENT = 0x25


def _table(allowed: bytes) -> bytes:
    """A 256-byte table: 1 at the values in ``allowed``."""
    return bytes(1 if c in allowed else 0 for c in range(256))


_LETTERS_DIGITS = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
#: Target bytes (RFC 3986 unreserved, sub-delims, ``:@/?%``).
TARGET_BYTES = _table(_LETTERS_DIGITS + b"-._~!$&'()*+,;=:@/?%")
#: Field name bytes (RFC 9110 token).
TOKEN_BYTES = _table(_LETTERS_DIGITS + b"!#$%&'*+-.^_`|~")
#: Field value bytes (visible ASCII, space and tab).
VALUE_BYTES = _table(bytes(range(0x21, 0x7F)) + b" \t")


class HeadScanner:
    """Scans plain heads for one set of limits (one per loop and limits, as the parser
    callbacks are: scans never nest). ``scan`` leaves what it found in its fields."""

    __slots__ = (
        "_target_bytes",
        "_token_bytes",
        "_value_bytes",
        "escaped",
        "fields_end",
        "fields_start",
        "max_fields",
        "max_head",
        "max_target",
        "method",
        "target_end",
        "target_start",
    )

    def __init__(self, limits: Limits) -> None:
        #: A head longer than this may break the header block limit: llhttp's general
        #: path measures it (a field counts at most one byte more than its shortest form
        #: on the wire, ``name:value\r\n``).
        self.max_head = limits.max_header_bytes - limits.max_headers
        self.max_target = limits.max_request_line
        self.max_fields = limits.max_headers
        #: The last head scanned: its method, where its target and its field lines are
        #: in the data, and whether the target has a query or an escape (``?``, ``%``).
        self.method = ""
        self.target_start = self.target_end = 0
        self.fields_start = self.fields_end = 0
        self.escaped = False
        # (C pointers into the module's tables, in the compiled build)
        self._target_bytes = TARGET_BYTES
        self._token_bytes = TOKEN_BYTES
        self._value_bytes = VALUE_BYTES

    def scan(self, data: bytes, start: int, end: int) -> int:
        """Where the plain head at ``data[start:end]`` ends (after its blank line), or 0
        when the bytes there are not a whole plain head."""
        if end - start > self.max_head:
            end = start + self.max_head  # (a longer head is not plain)
        i = self._method(data, start, end)
        if not i:
            return 0
        # The target: origin form, RFC 3986 bytes, within the request line limit.
        self.target_start = i
        if i >= end or data[i] != ord("/"):
            return 0
        limit = min(end, i + self.max_target)
        escaped = False
        table = self._target_bytes
        while i < limit and table[data[i]]:
            c = data[i]
            if c == QUESTION or c == PERCENT:
                escaped = True
            i += 1
        self.target_end = i
        self.escaped = escaped
        if not _starts(data, i, end, VERSION_LINE):
            return 0
        i += len(VERSION_LINE)
        # The fields, up to the blank line.
        self.fields_start = i
        hosts = 0
        fields = 0
        token = self._token_bytes
        value = self._value_bytes
        while True:
            if i + 1 >= end:
                return 0
            if data[i] == CR:
                if data[i + 1] != LF or hosts != 1:
                    return 0
                self.fields_end = i - 2  # (the last field line's end)
                return i + 2
            name = i
            while i < end and token[data[i]]:
                i += 1
            if i == name or i >= end or data[i] != COLON:
                return 0
            length = i - name
            if length == 4 and _lower_is(data, name, b"host"):
                hosts += 1
            elif _special(data, name, length):  # a field the parser acts on
                return 0
            i += 1
            while i < end and value[data[i]]:
                i += 1
            if i + 1 >= end or data[i] != CR or data[i + 1] != LF:
                return 0
            i += 2
            fields += 1
            if fields > self.max_fields:
                return 0

    def _method(self, data: bytes, start: int, end: int) -> int:
        """Where the target begins after a plain method and its space, or 0."""
        for opening, method in PLAIN_METHODS:
            if _starts(data, start, end, opening):
                self.method = method
                return start + len(opening)
        return 0


def _starts(data: bytes, i: int, end: int, literal: bytes) -> bool:
    """Whether ``data[i:end]`` begins with ``literal``."""
    n = len(literal)
    if end - i < n:
        return False
    for k in range(n):
        if data[i + k] != literal[k]:
            return False
    return True


def _lower_is(data: bytes, i: int, name: bytes) -> bool:
    """Whether the token at ``data[i:]`` is ``name`` (lower case letters and ``-``) in any
    case: OR-ing 0x20 lowers a letter and maps no other token byte onto one of them."""
    for k in range(len(name)):
        if data[i + k] | 0x20 != name[k]:
            return False
    return True


def _special(data: bytes, i: int, length: int) -> bool:
    """Whether the field name at ``data[i:i + length]`` is one the parser acts on (their
    lengths differ: one comparison at most)."""
    if length == 6:
        return _lower_is(data, i, b"expect")
    if length == 7:
        return _lower_is(data, i, b"upgrade")
    if length == 10:
        return _lower_is(data, i, b"connection")
    if length == 14:
        return _lower_is(data, i, b"content-length")
    if length == 17:
        return _lower_is(data, i, b"transfer-encoding")
    return False


def header_fields(block: bytes) -> list[tuple[bytes, bytes]]:
    """The ``(name, value)`` pairs of the field lines a scan accepted (``block``: the
    lines from ``fields_start`` to ``fields_end``), as llhttp gives them."""
    pairs = []
    for line in block.split(b"\r\n"):
        name, _, value = line.partition(b":")
        pairs.append((name, value.lstrip(b" \t")))
    return pairs
