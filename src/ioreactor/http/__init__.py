"""HTTP/1.1 on the reactor: httptools parsing, a router, ordered pipelined responses.

::

    from ioreactor.http import App, HttpServer
    app = App()

    @app.route("/")
    def hello(request):
        return "Hello, World!"

    HttpServer(loop, "127.0.0.1:8080", app).start()

The names below are imported on first use, so importing a submodule (``limits`` for the
CLI's defaults, say) does not load httptools and the rest.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ioreactor._lazy import lazy_exports

if TYPE_CHECKING:
    from ioreactor.http.app import App
    from ioreactor.http.dispatch import Dispatcher
    from ioreactor.http.errors import HttpError
    from ioreactor.http.handler import HttpHandler
    from ioreactor.http.headers import HeaderError, Headers
    from ioreactor.http.limits import Limits
    from ioreactor.http.request import BodyConsumer, Request
    from ioreactor.http.response import FileResponse, Response, StreamingResponse
    from ioreactor.http.server import HttpServer

_EXPORTS = {
    "App": "app",
    "BodyConsumer": "request",
    "Dispatcher": "dispatch",
    "FileResponse": "response",
    "HeaderError": "headers",
    "Headers": "headers",
    "HttpError": "errors",
    "HttpHandler": "handler",
    "HttpServer": "server",
    "Limits": "limits",
    "Request": "request",
    "Response": "response",
    "StreamingResponse": "response",
}

__all__ = [
    "App",
    "BodyConsumer",
    "Dispatcher",
    "FileResponse",
    "HeaderError",
    "Headers",
    "HttpError",
    "HttpHandler",
    "HttpServer",
    "Limits",
    "Request",
    "Response",
    "StreamingResponse",
]


__getattr__ = lazy_exports(__name__, _EXPORTS)
