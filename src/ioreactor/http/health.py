"""Readiness: the health path a load balancer checks, and the process's draining state.

Data flow::

    balancer GET /healthz --> the route added by ``ioreactor serve`` (--health-path)
        --> 200 "ok" while serving | 503 "draining" from the moment this process starts
            draining (multicore: a stopping or replaced worker calls start_draining())

A balancer with active health checks (HAProxy's ``option httpchk``) takes the server out
after a few failed checks; a stopping worker keeps serving for ``--drain-delay`` seconds
after it starts answering 503, so the balancer has stopped sending before the listener
closes and the idle keep-alive connections are closed (none of its requests meets a
closing connection). The state is per process: each worker drains on its own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ioreactor.http.errors import HttpError
from ioreactor.http.response import Response

if TYPE_CHECKING:
    from ioreactor.http.app import App
    from ioreactor.http.request import Request

#: The path ``ioreactor serve`` answers for health checks unless ``--health-path`` says.
HEALTH_PATH = "/healthz"
OK = "ok\n"
DRAINING = Response(b"draining\n", status=503, content_type="text/plain; charset=utf-8")


class Health:
    """This process's readiness (one object per process: :data:`HEALTH`)."""

    __slots__ = ("draining",)

    def __init__(self) -> None:
        self.draining = False

    def start_draining(self) -> None:
        """From now on the health path answers 503 (the worker is on its way out)."""
        self.draining = True

    def answer(self, request: Request) -> str | Response:
        """The health route's handler: 200 while serving, 503 once draining."""
        return DRAINING if self.draining else OK


#: The state of this process.
HEALTH = Health()


def add_health_route(app: App, path: str = HEALTH_PATH) -> bool:
    """Answer ``path`` with :data:`HEALTH` in ``app``, unless the app has a route there
    already (its own check, which then decides alone); whether it was added."""
    try:
        app.router.resolve("GET", path)
    except HttpError:  # 404 or 405: the path is free for GET
        app.add_route(path, HEALTH.answer, ("GET", "HEAD"))
        return True
    return False
