"""The one exception the HTTP layer raises to answer a request with an error status."""

from __future__ import annotations


class HttpError(Exception):
    """Answer the current request with ``status``; ``close`` ends the connection after it.

    Raised by the protocol for framing and limit violations (which always close: the rest
    of the byte stream cannot be trusted) and by handlers or the router for ordinary
    errors such as 404 (which keep the connection).
    """

    def __init__(
        self,
        status: int,
        detail: str = "",
        *,
        close: bool = False,
        headers: tuple[tuple[str, str], ...] = (),
    ) -> None:
        super().__init__(status, detail)
        self.status = status
        self.detail = detail
        self.close = close
        self.headers = headers

    def __str__(self) -> str:
        return f"{self.status} {self.detail}".rstrip()
