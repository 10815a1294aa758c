"""The HTTP echo application that ``ioreactor serve`` runs.

``GET /``        ``Hello, World!`` as text/plain
``POST|PUT /echo``  the request body back, with its Content-Type
``GET /echo``    the request line and header fields, as text
``GET /healthz`` 200, 503 once the process drains (:mod:`ioreactor.http.health`)
``GET /whoami``  the client's address as the server sees it (PROXY protocol, trusted
                 forwarding headers)
``/static/...``  files under ``--static DIR``, zero-copy, with ranges
anything else    404 (405 for a known path with another method)
"""

from __future__ import annotations

import os

from ioreactor.http.app import App
from ioreactor.http.health import HEALTH, HEALTH_PATH
from ioreactor.http.request import Request
from ioreactor.http.response import OCTET_STREAM, Response

HELLO = "Hello, World!"


def hello(request: Request) -> str:
    return HELLO


def echo_body(request: Request) -> Response:
    return Response(
        request.body or b"",
        content_type=request.headers.get("content-type") or OCTET_STREAM,
    )


def echo_head(request: Request) -> str:
    lines = [f"{request.method} {request.target} HTTP/{request.version}"]
    lines.extend(f"{name}: {value}" for name, value in request.headers.items())
    return "\n".join(lines) + "\n"


def whoami(request: Request) -> str:
    peer = request.peer
    return f"{peer[0]} {peer[1]}\n" if isinstance(peer, tuple) else f"{peer}\n"


def build_echo_app(static_dir: str | os.PathLike[str] | None = None) -> App:
    app = App()
    app.add_route("/", hello)
    app.add_route("/echo", echo_body, ("POST", "PUT"))
    app.add_route("/echo", echo_head, ("GET",))
    app.add_route(HEALTH_PATH, HEALTH.answer, ("GET", "HEAD"))
    app.add_route("/whoami", whoami)
    if static_dir is not None:
        app.static("/static", static_dir)
    return app
