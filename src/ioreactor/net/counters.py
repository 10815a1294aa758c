"""Named event counters: what one layer saw, one integer a kind of event.

Data flow::

    the layer, at each event --stats.<name> += 1--> Counters subclass
        --as_dict() / repr()--> reports, tests, the CLI

A subclass lists its counters in ``__slots__`` and documents each one as an ``int``
annotation with a ``#:`` comment (:class:`~ioreactor.net.tls.TlsStats`,
:class:`~ioreactor.net.proxy_protocol.ProxyProtocolStats`).
"""

from __future__ import annotations


class Counters:
    """Event counters, every one zero at first, readable from any thread. A layer whose
    loops run on several threads may lose a count when two add at the same instant:
    they are for reports, not for control."""

    __slots__: tuple[str, ...] = ()

    def __init__(self) -> None:
        for name in self.__slots__:
            setattr(self, name, 0)

    def as_dict(self) -> dict[str, int]:
        """Every counter by name."""
        return {name: getattr(self, name) for name in self.__slots__}

    def __repr__(self) -> str:
        counts = ", ".join(f"{name}={n}" for name, n in self.as_dict().items() if n)
        return f"<{type(self).__name__} {counts or 'nothing yet'}>"
