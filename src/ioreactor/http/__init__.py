"""HTTP/1.1 on the reactor: httptools parsing, a router, ordered pipelined responses.

::

    from ioreactor.http import App, HttpServer
    app = App()

    @app.route("/")
    def hello(request):
        return "Hello, World!"

    HttpServer(loop, "127.0.0.1:8080", app).start()
"""

from ioreactor.http.app import App
from ioreactor.http.errors import HttpError
from ioreactor.http.handler import HttpHandler
from ioreactor.http.headers import HeaderError, Headers
from ioreactor.http.limits import Limits
from ioreactor.http.request import BodyConsumer, Request
from ioreactor.http.response import FileResponse, Response, StreamingResponse
from ioreactor.http.server import HttpServer

__all__ = [
    "App",
    "BodyConsumer",
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
