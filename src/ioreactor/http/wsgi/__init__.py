"""PEP 3333 (WSGI) applications on the reactor: Flask, Django and the rest.

::

    from ioreactor.http import HttpServer
    from ioreactor.http.wsgi import WsgiDispatcher

    HttpServer(loop, "127.0.0.1:8000", WsgiDispatcher(flask_app, threads=8)).start()

or ``ioreactor serve myproj.wsgi:application``. The reactor reads and bounds every
request; the application runs in a pool of threads on complete requests (or, with
``stream_body``, on the head while the body arrives); responses leave through the
connection's output buffer. Modules: ``dispatcher`` (the seam and the calls),
``environ`` (PEP 3333's environ), ``response`` (start_response, write, framing),
``body`` (the streamed ``wsgi.input``), ``pool`` (the threads).
"""

from __future__ import annotations

from ioreactor.http.wsgi.dispatcher import (
    DEFAULT_THREADS,
    POOL_TIMEOUT,
    WsgiDispatcher,
    is_wsgi_callable,
)
from ioreactor.http.wsgi.response import FileWrapper

__all__ = ["DEFAULT_THREADS", "POOL_TIMEOUT", "FileWrapper", "WsgiDispatcher", "is_wsgi_callable"]
