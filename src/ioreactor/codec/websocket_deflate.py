"""permessage-deflate (RFC 7692): the handshake's parameters and per-message (de)compression.

Data flow::

    message out -> deflate (Z_SYNC_FLUSH) -> strip 00 00 ff ff -> frames, RSV1 on the first
    frames in (RSV1) -> inflate each fragment, output capped -> + 00 00 ff ff at FIN -> message

Negotiation (RFC 7692 §7.1). The client offers ``permessage-deflate`` with parameters;
the server accepts the first offer it can honour, answering with the parameters both
ends will use, or declines them all (the connection then runs uncompressed):

==========================  ===============================================================
parameter                   meaning
==========================  ===============================================================
server_no_context_takeover  the server resets its compressor after every message
client_no_context_takeover  the client resets its compressor after every message
server_max_window_bits=N    the server compresses with an LZ77 window of at most 2**N bytes
client_max_window_bits[=N]  in an offer: the client can limit its window (to N at most);
                            in a response: the client must compress with at most 2**N
==========================  ===============================================================

zlib cannot compress with an 8-bit window (``wbits=-8`` is refused), so this end never
agrees to compress with one: an offer that asks it is declined, a response that imposes
it is refused. Decompressing such a stream works.

Memory. A compressor costs ``2**(wbits+2) + 2**(mem_level+9)`` bytes and a decompressor
about ``2**wbits`` plus 7 KiB; both are created on first use, and without context
takeover in a direction the object is dropped after each message, so an idle connection
then holds none. The defaults (:data:`WINDOW_BITS` 12, :data:`MEM_LEVEL` 5: 32 KiB for a
compressor) are websockets' measured trade-off. Decompression bombs: the caller gives a
cap on the output of every call (``decompressobj().decompress(data, max_length)``), so a
few KiB on the wire can never become more than the message limit in memory.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterable
from dataclasses import dataclass

#: The extension's name in ``Sec-WebSocket-Extensions``.
EXTENSION_NAME = "permessage-deflate"
#: Default LZ77 window (bits) this end asks for in both directions.
WINDOW_BITS = 12
#: Default zlib memLevel of a compressor (1-9; zlib's own default is 8).
MEM_LEVEL = 5
#: Default zlib compression level (0-9).
COMPRESSION_LEVEL = 6
#: What a sync flush ends with; removed on the wire, restored before inflating (§7.2.1).
TAIL = b"\x00\x00\xff\xff"

_MIN_BITS = 8
_MAX_BITS = 15
#: Smallest window zlib compresses with.
_MIN_COMPRESS_BITS = 9
_TAIL_LEN = len(TAIL)


class NegotiationError(ValueError):
    """A ``Sec-WebSocket-Extensions`` value that is malformed or cannot be honoured."""


# -- Sec-WebSocket-Extensions ------------------------------------------------------------

# RFC 7230 token, quoted-string (RFC 6455 §9.1 uses the same grammar).
_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_QUOTED = r'"(?:[^"\\]|\\.)*"'
_PARAM = re.compile(rf"[ \t]*({_TOKEN})[ \t]*(?:=[ \t]*({_TOKEN}|{_QUOTED}))?[ \t]*\Z")
_NAME = re.compile(rf"[ \t]*({_TOKEN})[ \t]*\Z")

#: One extension of the list: its name and its parameters in order (value None: no value).
Extension = tuple[str, list[tuple[str, str | None]]]


def _split_outside_quotes(text: str, separator: str) -> list[str]:
    parts: list[str] = []
    start = 0
    quoted = escaped = False
    for i, char in enumerate(text):
        if escaped:
            escaped = False
        elif char == "\\" and quoted:
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == separator and not quoted:
            parts.append(text[start:i])
            start = i + 1
    if quoted:
        raise NegotiationError(f"unterminated quoted string in {text!r}")
    parts.append(text[start:])
    return parts


def parse_extensions(values: Iterable[str]) -> list[Extension]:
    """Every extension listed in the ``Sec-WebSocket-Extensions`` field values, in order.

    Empty list elements are skipped (RFC 7230 §7); anything else that is not
    ``name *(";" param ["=" value])`` raises :class:`NegotiationError`.
    """
    extensions: list[Extension] = []
    for value in values:
        for element in _split_outside_quotes(value, ","):
            if not element.strip(" \t"):
                continue
            name_part, *param_parts = _split_outside_quotes(element, ";")
            name = _NAME.match(name_part)
            if name is None:
                raise NegotiationError(f"malformed extension {element.strip()!r}")
            params: list[tuple[str, str | None]] = []
            for part in param_parts:
                param = _PARAM.match(part)
                if param is None:
                    raise NegotiationError(f"malformed extension parameter {part.strip()!r}")
                raw = param.group(2)
                if raw is not None and raw.startswith('"'):
                    raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
                params.append((param.group(1).lower(), raw))
            extensions.append((name.group(1).lower(), params))
    return extensions


# -- parameters --------------------------------------------------------------------------


def _extension_value(stated: DeflateParameters | DeflateConfig, *, any_client_window: bool) -> str:
    """A ``Sec-WebSocket-Extensions`` value stating ``stated``'s parameters; with
    ``any_client_window`` (a client's offer) an unset client window is offered as a bare
    ``client_max_window_bits``: any window the server picks (9-15)."""
    parts = [EXTENSION_NAME]
    if stated.server_no_context_takeover:
        parts.append("server_no_context_takeover")
    if stated.client_no_context_takeover:
        parts.append("client_no_context_takeover")
    if stated.server_max_window_bits is not None:
        parts.append(f"server_max_window_bits={stated.server_max_window_bits}")
    if stated.client_max_window_bits is not None:
        parts.append(f"client_max_window_bits={stated.client_max_window_bits}")
    elif any_client_window:
        parts.append("client_max_window_bits")
    return "; ".join(parts)


@dataclass(frozen=True, slots=True)
class DeflateParameters:
    """The parameters both ends agreed on. A window left None was not stated: 15 bits."""

    server_no_context_takeover: bool = False
    client_no_context_takeover: bool = False
    server_max_window_bits: int | None = None
    client_max_window_bits: int | None = None

    def header_value(self) -> str:
        """The ``Sec-WebSocket-Extensions`` value that states these parameters."""
        return _extension_value(self, any_client_window=False)


@dataclass(frozen=True, slots=True)
class _Offer:
    """The parameters of one offer (or response) as written; None: not present."""

    server_no_context_takeover: bool
    client_no_context_takeover: bool
    server_max_window_bits: int | None
    #: True: present without a value (only valid in an offer).
    client_max_window_bits: int | bool | None


def _window_bits(name: str, value: str | None) -> int:
    if value is None or not value.isdigit() or not _MIN_BITS <= int(value) <= _MAX_BITS:
        raise NegotiationError(f"{name} must be an integer from 8 to 15, got {value!r}")
    return int(value)


def _read_params(params: list[tuple[str, str | None]], *, offer: bool) -> _Offer:
    """The parameters, each at most once and with a valid value, or NegotiationError."""
    seen: set[str] = set()
    server_nct = client_nct = False
    server_bits: int | None = None
    client_bits: int | bool | None = None
    for name, value in params:
        if name in seen:
            raise NegotiationError(f"{EXTENSION_NAME}: parameter {name} given twice")
        seen.add(name)
        if name in ("server_no_context_takeover", "client_no_context_takeover"):
            if value is not None:
                raise NegotiationError(f"{EXTENSION_NAME}: {name} takes no value")
            if name == "server_no_context_takeover":
                server_nct = True
            else:
                client_nct = True
        elif name == "server_max_window_bits":
            server_bits = _window_bits(name, value)
        elif name == "client_max_window_bits":
            client_bits = True if value is None and offer else _window_bits(name, value)
        else:
            raise NegotiationError(f"{EXTENSION_NAME}: unknown parameter {name}")
    return _Offer(server_nct, client_nct, server_bits, client_bits)


@dataclass(frozen=True, slots=True)
class DeflateConfig:
    """What this end asks for and accepts when it negotiates permessage-deflate.

    On a server: ``server_no_context_takeover`` and ``server_max_window_bits`` limit the
    server's own compressor (declared to the client so it can allocate less);
    ``client_no_context_takeover`` and ``client_max_window_bits`` are requested from the
    client (the window only when the client offered to limit it). On a client: the same
    four are put in the offer. None leaves a window at what the peer proposes (at most
    15 bits). ``compression_level`` and ``mem_level`` tune this end's compressor.
    """

    server_no_context_takeover: bool = False
    client_no_context_takeover: bool = False
    server_max_window_bits: int | None = WINDOW_BITS
    client_max_window_bits: int | None = WINDOW_BITS
    compression_level: int = COMPRESSION_LEVEL
    mem_level: int = MEM_LEVEL

    def __post_init__(self) -> None:
        for name in ("server_max_window_bits", "client_max_window_bits"):
            bits = getattr(self, name)
            if bits is not None and not _MIN_COMPRESS_BITS <= bits <= _MAX_BITS:
                raise ValueError(f"{name} must be from 9 to 15 (zlib cannot use 8), got {bits}")
        if not 0 <= self.compression_level <= 9:
            raise ValueError(f"compression_level must be 0-9, got {self.compression_level}")
        if not 1 <= self.mem_level <= 9:
            raise ValueError(f"mem_level must be 1-9, got {self.mem_level}")

    # -- server side ----------------------------------------------------------------------

    def accept_offers(self, extensions: list[Extension]) -> DeflateParameters | None:
        """The parameters for the first permessage-deflate offer this server can honour
        (RFC 7692 §7.1), or None when it declines them all. Other extensions are ignored;
        an offer with an unknown, repeated or invalid parameter is declined."""
        for name, params in extensions:
            if name != EXTENSION_NAME:
                continue
            try:
                offer = _read_params(params, offer=True)
            except NegotiationError:
                continue
            server_bits = offer.server_max_window_bits
            if self.server_max_window_bits is not None:
                server_bits = min(server_bits or _MAX_BITS, self.server_max_window_bits)
            if server_bits is not None and server_bits < _MIN_COMPRESS_BITS:
                continue  # the client wants an 8-bit window: zlib cannot compress with it
            client_bits = offer.client_max_window_bits
            if client_bits is True:  # the client lets us choose
                client_bits = self.client_max_window_bits
            elif isinstance(client_bits, int) and self.client_max_window_bits is not None:
                client_bits = min(client_bits, self.client_max_window_bits)
            return DeflateParameters(
                server_no_context_takeover=(
                    offer.server_no_context_takeover or self.server_no_context_takeover
                ),
                client_no_context_takeover=(
                    offer.client_no_context_takeover or self.client_no_context_takeover
                ),
                server_max_window_bits=server_bits,
                client_max_window_bits=None if client_bits is None else int(client_bits),
            )
        return None

    # -- client side ----------------------------------------------------------------------

    def offer(self) -> str:
        """This client's ``Sec-WebSocket-Extensions`` offer."""
        return _extension_value(self, any_client_window=True)

    def check_response(self, extensions: list[Extension]) -> DeflateParameters | None:
        """The parameters of the server's answer to :meth:`offer` (None: it declined).

        Raises :class:`NegotiationError` when the answer breaks RFC 7692 §7.1: an
        extension we did not offer, a parameter given twice or invalid, a window larger
        than the offer allowed, a missing ``server_no_context_takeover`` we asked for, or
        an 8-bit window for our compressor.
        """
        if not extensions:
            return None
        if len(extensions) > 1 or extensions[0][0] != EXTENSION_NAME:
            names = ", ".join(name for name, _ in extensions)
            raise NegotiationError(f"the server accepted extensions that were not offered: {names}")
        answer = _read_params(extensions[0][1], offer=False)
        if self.server_no_context_takeover and not answer.server_no_context_takeover:
            raise NegotiationError("the server ignored server_no_context_takeover")
        server_bits = answer.server_max_window_bits
        if (
            self.server_max_window_bits is not None
            and server_bits is not None
            and server_bits > self.server_max_window_bits
        ):
            raise NegotiationError(
                f"server_max_window_bits={server_bits} exceeds the offered "
                f"{self.server_max_window_bits}"
            )
        client_bits = answer.client_max_window_bits
        if isinstance(client_bits, int) and not isinstance(client_bits, bool):
            if self.client_max_window_bits is not None and client_bits > (
                self.client_max_window_bits
            ):
                raise NegotiationError(
                    f"client_max_window_bits={client_bits} exceeds the offered "
                    f"{self.client_max_window_bits}"
                )
            if client_bits < _MIN_COMPRESS_BITS:
                raise NegotiationError("client_max_window_bits=8: zlib cannot compress with it")
        else:
            client_bits = self.client_max_window_bits
        return DeflateParameters(
            server_no_context_takeover=answer.server_no_context_takeover,
            client_no_context_takeover=(
                answer.client_no_context_takeover or self.client_no_context_takeover
            ),
            server_max_window_bits=server_bits,
            client_max_window_bits=client_bits,
        )


# -- compression -------------------------------------------------------------------------


class PerMessageDeflate:
    """One connection's compressor and decompressor, as agreed in ``params``.

    ``server``: which end this is (it picks the direction each parameter applies to).
    """

    __slots__ = (
        "_compressor",
        "_decompressor",
        "level",
        "local_bits",
        "local_takeover",
        "mem_level",
        "remote_bits",
        "remote_takeover",
    )

    def __init__(
        self,
        params: DeflateParameters,
        *,
        server: bool,
        level: int = COMPRESSION_LEVEL,
        mem_level: int = MEM_LEVEL,
    ) -> None:
        server_bits = params.server_max_window_bits or _MAX_BITS
        client_bits = params.client_max_window_bits or _MAX_BITS
        if server:
            local_bits, remote_bits = server_bits, client_bits
            local_nct, remote_nct = (
                params.server_no_context_takeover,
                params.client_no_context_takeover,
            )
        else:
            local_bits, remote_bits = client_bits, server_bits
            local_nct, remote_nct = (
                params.client_no_context_takeover,
                params.server_no_context_takeover,
            )
        if local_bits < _MIN_COMPRESS_BITS:
            raise ValueError("zlib cannot compress with an 8-bit window")
        self.local_bits = local_bits
        self.remote_bits = remote_bits
        self.local_takeover = not local_nct
        self.remote_takeover = not remote_nct
        self.level = level
        self.mem_level = mem_level
        self._compressor: zlib._Compress | None = None
        self._decompressor: zlib._Decompress | None = None

    def __repr__(self) -> str:
        return (
            f"PerMessageDeflate(local_bits={self.local_bits}, remote_bits={self.remote_bits}, "
            f"local_takeover={self.local_takeover}, remote_takeover={self.remote_takeover})"
        )

    def compress(self, data: bytes | bytearray | memoryview) -> bytes:
        """One whole message, compressed, without the sync-flush tail (RFC 7692 §7.2.1)."""
        compressor = self._compressor
        if compressor is None:
            compressor = zlib.compressobj(
                self.level, zlib.DEFLATED, -self.local_bits, self.mem_level
            )
            if self.local_takeover:
                self._compressor = compressor
        out = compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)
        if out.endswith(TAIL):
            out = out[:-_TAIL_LEN]
        return out

    def decompress(self, data: bytes | bytearray | memoryview, max_length: int) -> bytes:
        """The next fragment of a compressed message, inflated; at most ``max_length``
        bytes come out (then the message is too big). Raises ``zlib.error`` on a
        corrupt stream."""
        decompressor = self._decompressor
        if decompressor is None:
            decompressor = self._decompressor = zlib.decompressobj(-self.remote_bits)
        return decompressor.decompress(data, max_length)

    def end_message(self, max_length: int) -> bytes:
        """Restore the tail after the last fragment: the message's last output (at most
        ``max_length`` bytes). Without context takeover the decompressor is dropped."""
        decompressor = self._decompressor
        if decompressor is None:
            decompressor = self._decompressor = zlib.decompressobj(-self.remote_bits)
        out = decompressor.decompress(TAIL, max_length)
        # A sender may end a message's stream (BFINAL): the next message starts afresh.
        if not self.remote_takeover or decompressor.eof:
            self._decompressor = None
        return out
