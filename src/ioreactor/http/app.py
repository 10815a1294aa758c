"""An HTTP application: its routes, and the name it gives in ``Server``."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import TypeVar

from ioreactor.http.router import Route, Router
from ioreactor.http.static import StaticFiles

F = TypeVar("F", bound=Callable[..., object])


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
    loop's worker pool instead.
    """

    def __init__(self, server_name: str = "ioreactor") -> None:
        self.router = Router()
        self.server_name = server_name

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

    def static(self, prefix: str, directory: str | os.PathLike[str]) -> StaticFiles:
        """Serve the files under ``directory`` at ``prefix/...`` (GET and HEAD)."""
        files = StaticFiles(directory)
        self.router.add(prefix.rstrip("/") + "/{path:path}", files, ("GET",))
        return files
