"""An ASGI server on ioreactor's HTTP protocol and asyncio loop (ASGI 3, HTTP 2.4,
WebSocket, lifespan).

::

    from ioreactor.http.asgi import AsgiDispatcher, AsgiHandler
    handler = AsgiHandler(AsgiDispatcher(app))        # app: FastAPI, Starlette, ...
    # served by ioreactor.multicore.run_server(lambda: handler, ...) on ioreactor.aio,
    # or: ioreactor serve myproj.web:app

Modules: ``dispatcher`` (the Dispatcher: requests to Tasks), ``cycle`` (one HTTP
request's receive/send), ``websocket`` (Upgrade to a WebSocket session), ``lifespan``,
``scope`` (the scopes), ``fields`` (the application's response fields),
``handler`` (the connection handler), ``app`` (ASGI 3 / ASGI 2 detection). The names
below are imported on first use (a native App never loads asyncio through them).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ioreactor._lazy import lazy_exports

if TYPE_CHECKING:
    from ioreactor.http.asgi.app import ASGI2Middleware, as_asgi3, asgi_version
    from ioreactor.http.asgi.cycle import ClientDisconnected
    from ioreactor.http.asgi.dispatcher import AsgiDispatcher
    from ioreactor.http.asgi.handler import AsgiHandler
    from ioreactor.http.asgi.lifespan import Lifespan, LifespanError
    from ioreactor.http.asgi.websocket import WebSocketOptions

_EXPORTS = {
    "ASGI2Middleware": "app",
    "AsgiDispatcher": "dispatcher",
    "AsgiHandler": "handler",
    "ClientDisconnected": "cycle",
    "Lifespan": "lifespan",
    "LifespanError": "lifespan",
    "WebSocketOptions": "websocket",
    "as_asgi3": "app",
    "asgi_version": "app",
}

__all__ = [
    "ASGI2Middleware",
    "AsgiDispatcher",
    "AsgiHandler",
    "ClientDisconnected",
    "Lifespan",
    "LifespanError",
    "WebSocketOptions",
    "as_asgi3",
    "asgi_version",
]


__getattr__ = lazy_exports(__name__, _EXPORTS)
