"""Header fields: the request's case-insensitive multi-map, and checks for response fields.

Request fields arrive from httptools as ``(name, value)`` byte pairs and are kept in that
raw form, in order; the lower-cased index is built on the first lookup, so a handler that
never looks at a header pays nothing for it.

Response fields set by handlers are checked before they are stored: a name must be an
RFC 9110 token and a value must not contain CR, LF or NUL. A value with a line break
would let whoever controls it inject headers or a whole response (response splitting),
so it raises :class:`HeaderError` instead of reaching the wire.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

#: RFC 9110 ``token``: what a field name may be.
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
#: Bytes that must never appear in a field value we send.
_FORBIDDEN_VALUE = re.compile(rb"[\r\n\0]")


class HeaderError(ValueError):
    """A response header name or value that must not be sent."""


def encode_field(name: str, value: str | int) -> bytes:
    """``b"Name: value\\r\\n"``, after checking both parts (raises :class:`HeaderError`)."""
    try:
        raw_name = name.encode("ascii")
        raw_value = str(value).encode("latin-1")
    except UnicodeEncodeError as exc:
        raise HeaderError(f"header {name!r}: not encodable: {exc}") from None
    if not _TOKEN.match(raw_name):
        raise HeaderError(f"invalid header name {name!r}")
    if _FORBIDDEN_VALUE.search(raw_value):
        raise HeaderError(f"header {name!r}: CR, LF or NUL in value {value!r}")
    return raw_name + b": " + raw_value.strip(b" \t") + b"\r\n"


class Headers:
    """A request's header fields: case-insensitive lookup, repeated names kept in order."""

    __slots__ = ("_index", "raw")

    def __init__(self, raw: list[tuple[bytes, bytes]] | None = None) -> None:
        #: The fields as received: ``(name, value)`` bytes, in order.
        self.raw: list[tuple[bytes, bytes]] = raw if raw is not None else []
        self._index: dict[str, list[str]] | None = None

    def _build(self) -> dict[str, list[str]]:
        index: dict[str, list[str]] = {}
        for name, value in self.raw:
            index.setdefault(name.decode("latin-1").lower(), []).append(value.decode("latin-1"))
        self._index = index
        return index

    def get(self, name: str, default: str | None = None) -> str | None:
        """The first value of ``name`` (any case), or ``default``."""
        values = (self._index or self._build()).get(name.lower())
        return values[0] if values else default

    def get_all(self, name: str) -> list[str]:
        """Every value of ``name``, in the order received."""
        return list((self._index or self._build()).get(name.lower(), ()))

    def __getitem__(self, name: str) -> str:
        values = (self._index or self._build()).get(name.lower())
        if not values:
            raise KeyError(name)
        return values[0]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in (self._index or self._build())

    def __len__(self) -> int:
        return len(self.raw)

    def __iter__(self) -> Iterator[str]:
        """Field names as received (repeated names repeat)."""
        return (name.decode("latin-1") for name, _ in self.raw)

    def items(self) -> list[tuple[str, str]]:
        """``(name, value)`` pairs as received, decoded as latin-1."""
        return [(n.decode("latin-1"), v.decode("latin-1")) for n, v in self.raw]

    def __repr__(self) -> str:
        return f"Headers({self.items()!r})"
