"""An HTTP application: its routes, and the name it gives in ``Server``."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar

from ioreactor.http.response import Response
from ioreactor.http.router import Route, Router
from ioreactor.http.static import StaticFiles

if TYPE_CHECKING:
    from ioreactor.codec.websocket_session import WebSocketHandler
    from ioreactor.http.request import Request

F = TypeVar("F", bound=Callable[..., object])
W = TypeVar("W", bound="WebSocketHandler | type[WebSocketHandler]")


def _upgrade_required(request: Request) -> Response:
    """A plain request for a WebSocket route (the Upgrade takes another way)."""
    return Response(
        "426 Upgrade Required: a WebSocket endpoint\n",
        426,
        headers={"Upgrade": "websocket", "Sec-WebSocket-Version": "13"},
    )


class App:
    """Routes requests to handlers::

        app = App()

        @app.route("/hello/{name}")
        def hello(request):
            return f"Hello, {request.params['name']}!"

    A handler takes the :class:`~ioreactor.http.request.Request` and returns a
    :class:`~ioreactor.http.response.Response`, ``StreamingResponse``, ``FileResponse``,
    ``str`` or ``bytes``, or raises :class:`~ioreactor.http.errors.HttpError`. It runs on
    the event loop, so it must not block; mark it ``blocking=True`` to run it in the
    loop's worker pool instead, or make it an ``async def`` to await (it runs on the
    asyncio loop that drives the reactor: ``ioreactor serve`` runs such an app on
    :mod:`ioreactor.aio`). ``@app.websocket(path)`` serves WebSocket on a path.
    """

    def __init__(self, server_name: str = "ioreactor") -> None:
        self.router = Router()
        self.server_name = server_name
        #: WebSocket routes: literal path -> the handler its connections are handed to.
        self.websockets: dict[str, WebSocketHandler] = {}

    def route(
        self,
        pattern: str,
        methods: Iterable[str] = ("GET",),
        *,
        blocking: bool = False,
        stream_body: bool = False,
    ) -> Callable[[F], F]:
        """Decorator: route ``methods`` on ``pattern`` to the decorated handler."""

        def register(handler: F) -> F:
            self.router.add(pattern, handler, methods, blocking=blocking, stream_body=stream_body)
            return handler

        return register

    def add_route(
        self,
        pattern: str,
        handler: Callable[..., object],
        methods: Iterable[str] = ("GET",),
        *,
        blocking: bool = False,
        stream_body: bool = False,
    ) -> Route:
        return self.router.add(
            pattern, handler, methods, blocking=blocking, stream_body=stream_body
        )

    def websocket(self, pattern: str, **options: Any) -> Callable[[W], W]:
        """Decorator: serve WebSocket on the literal path ``pattern`` with the decorated
        :class:`~ioreactor.codec.websocket_session.WebSocketHandler` (a subclass, made
        with ``options``, or an instance). An Upgrade request for the path is switched
        after its ``101``; any other request for it gets 426."""
        if "{" in pattern or not pattern.startswith("/"):
            raise ValueError(f"a WebSocket route is a literal path: {pattern!r}")

        def register(handler: W) -> W:
            instance = handler(**options) if isinstance(handler, type) else handler
            if pattern in self.websockets:
                raise ValueError(f"WebSocket {pattern} is already routed")
            self.websockets[pattern] = instance
            if self.router.plain.get(pattern) is None:
                self.router.add(pattern, _upgrade_required, ("GET",))
            return handler

        return register

    def static(self, prefix: str, directory: str | os.PathLike[str]) -> StaticFiles:
        """Serve the files under ``directory`` at ``prefix/...`` (GET and HEAD)."""
        files = StaticFiles(directory)
        self.router.add(prefix.rstrip("/") + "/{path:path}", files, ("GET",))
        return files
