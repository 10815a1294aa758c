"""An ASGI server on ioreactor's HTTP protocol and asyncio loop (ASGI 3, HTTP 2.4,
WebSocket, lifespan).

::

    from ioreactor.http.asgi import AsgiDispatcher, AsgiHandler
    handler = AsgiHandler(AsgiDispatcher(app))        # app: FastAPI, Starlette, ...
    # served by ioreactor.multicore.run_server(lambda: handler, ...) on ioreactor.aio,
    # or: ioreactor serve myproj.web:app

Modules: ``dispatcher`` (the Dispatcher: requests to Tasks), ``cycle`` (one HTTP
request's receive/send), ``websocket`` (Upgrade to a WebSocket session), ``lifespan``,
``scope`` (scopes and trusted proxies), ``fields`` (the application's response fields),
``handler`` (the connection handler), ``app`` (ASGI 3 / ASGI 2 detection).
"""

from ioreactor.http.asgi.app import ASGI2Middleware, as_asgi3, asgi_version
from ioreactor.http.asgi.cycle import ClientDisconnected
from ioreactor.http.asgi.dispatcher import AsgiDispatcher
from ioreactor.http.asgi.handler import AsgiHandler
from ioreactor.http.asgi.lifespan import LIFESPAN_MODES, Lifespan, LifespanError
from ioreactor.http.asgi.scope import TrustedProxies
from ioreactor.http.asgi.websocket import WebSocketOptions

__all__ = [
    "LIFESPAN_MODES",
    "ASGI2Middleware",
    "AsgiDispatcher",
    "AsgiHandler",
    "ClientDisconnected",
    "Lifespan",
    "LifespanError",
    "TrustedProxies",
    "WebSocketOptions",
    "as_asgi3",
    "asgi_version",
]
