"""Who watches a connection's responses: the access log, the metrics.

Data flow::

    ResponseQueue.respond (every=True only) / fill / refuse, HttpProtocol timeouts
        --> ResponseObserver.responded(request, result) -> the result to send
            .refused(peer, error) / .abandoned(request) / .timed_out(kind)
    ResponseQueue.fill_rendered (a response the dispatcher encoded: ASGI)
        --> ResponseObserver.sent(request, status, size)

An observer that wants every response (``every``: an access log) makes the connection
take the queue's path for each answer; one that does not (metrics, counted in the
dispatcher) leaves the common answer's short path alone and hears only of answers that
came later, refusals, abandoned answers and timeouts. Without an observer the queue
asks nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from ioreactor.http.errors import HttpError
    from ioreactor.http.request import Request


class ResponseObserver(Protocol):
    #: Whether it hears of every response (else only of those answered later).
    every: bool

    def responded(self, request: Request, result: object) -> object:
        """``result`` answers ``request``; returns what to send (it may add a field)."""

    def sent(self, request: Request, status: int, size: int) -> None:
        """A response the dispatcher encoded itself answers ``request`` (``size``: its
        body's bytes, -1 if not known)."""

    def refused(self, peer: object, error: HttpError) -> None:
        """A protocol error is answered (no request reached the application)."""

    def abandoned(self, request: Request) -> None:
        """An answer reserved for ``request`` will never be sent (the connection closed)."""

    def timed_out(self, kind: str) -> None:
        """A deadline closed the connection: ``header``, ``body`` or ``keep-alive``."""


class Observers:
    """Several observers as one (the access log and the metrics)."""

    __slots__ = ("every", "observers")

    def __init__(self, *observers: ResponseObserver) -> None:
        self.observers = observers
        self.every = any(o.every for o in observers)

    def responded(self, request: Request, result: object) -> object:
        for observer in self.observers:
            result = observer.responded(request, result)
        return result

    def sent(self, request: Request, status: int, size: int) -> None:
        for observer in self.observers:
            observer.sent(request, status, size)

    def refused(self, peer: object, error: HttpError) -> None:
        for observer in self.observers:
            observer.refused(peer, error)

    def abandoned(self, request: Request) -> None:
        for observer in self.observers:
            observer.abandoned(request)

    def timed_out(self, kind: str) -> None:
        for observer in self.observers:
            observer.timed_out(kind)


def combine(*observers: ResponseObserver | None) -> ResponseObserver | None:
    """The observers given (None ones left out) as one, or None."""
    present = [o for o in observers if o is not None]
    if not present:
        return None
    return present[0] if len(present) == 1 else Observers(*present)
