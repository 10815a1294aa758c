"""ASGI lifespan: the application's startup before a serving process accepts, and its
shutdown after the requests in flight are done.

Data flow::

    serving process starts --startup()--> Task: app({"type": "lifespan", "state": {}})
        receive() -> lifespan.startup; the app answers lifespan.startup.complete
        (the server accepts from now on) or .failed / raises (the process exits 1
        before it accepts a connection)
    graceful stop, in-flight requests finished --shutdown()--> receive() ->
        lifespan.shutdown; the app answers .complete / .failed (logged), or the
        timeout passes (the Task is cancelled)

``mode``: ``on`` (a failure of any kind stops the server), ``off`` (no lifespan), or
``auto`` (uvicorn's default: an application that raises before its first lifespan
message does not support the protocol; the server goes on without it). ``state`` is the
dict the application fills during startup; each request's scope gets a shallow copy.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from ioreactor.http.asgi.scope import ASGI_VERSION

log = logging.getLogger("ioreactor.asgi")

#: Seconds the application's startup may take before the server gives up.
STARTUP_TIMEOUT = 60.0
#: Seconds its shutdown may take before it is cancelled.
SHUTDOWN_TIMEOUT = 30.0
#: ``--lifespan``: run the lifespan protocol if the application speaks it, always (its
#: failure stops the server), or never.
LIFESPAN_MODES = ("auto", "on", "off")


class LifespanError(RuntimeError):
    """The application's startup failed: the server does not start."""


class Lifespan:
    """Runs the lifespan protocol of one application in one serving process."""

    __slots__ = (
        "_answered",
        "_events",
        "_failure",
        "_started",
        "_task",
        "app",
        "mode",
        "state",
        "supported",
    )

    def __init__(self, app: Callable[..., Awaitable[None]], mode: str = "auto") -> None:
        if mode not in LIFESPAN_MODES:
            raise ValueError(f"lifespan mode must be one of {', '.join(LIFESPAN_MODES)}")
        self.app = app
        self.mode = mode
        self.state: dict[str, Any] = {}
        #: Whether the application speaks the protocol (known once startup ran).
        self.supported = mode != "off"
        self._events: asyncio.Queue[dict[str, Any]] | None = None
        self._answered: asyncio.Future[str] | None = None
        self._failure = ""
        self._started = False
        self._task: asyncio.Task[None] | None = None

    async def startup(self, timeout: float = STARTUP_TIMEOUT) -> None:
        """Run the startup; raise :class:`LifespanError` if it failed (``on``, or an
        explicit ``lifespan.startup.failed``)."""
        if self.mode == "off":
            return
        loop = asyncio.get_running_loop()
        self._events = asyncio.Queue()
        self._answered = loop.create_future()
        self._events.put_nowait({"type": "lifespan.startup"})
        self._task = loop.create_task(self._main(), name="ASGI lifespan")
        try:
            outcome = await asyncio.wait_for(asyncio.shield(self._answered), timeout)
        except TimeoutError:
            self._task.cancel()
            raise LifespanError(f"the application's startup took more than {timeout} s") from None
        if outcome == "complete":
            self._started = True
            return
        if outcome in ("unsupported", "returned"):
            # (returning without a message: nothing to start, as uvicorn takes it)
            self.supported = False
            return
        raise LifespanError(f"the application's startup failed: {self._failure}")

    async def shutdown(self, timeout: float = SHUTDOWN_TIMEOUT) -> None:
        """Run the shutdown (after the requests in flight); failures are logged."""
        task = self._task
        if not self._started or task is None or self._events is None or task.done():
            return
        self._answered = asyncio.get_running_loop().create_future()
        self._events.put_nowait({"type": "lifespan.shutdown"})
        try:
            outcome = await asyncio.wait_for(asyncio.shield(self._answered), timeout)
        except TimeoutError:
            log.error("the application's lifespan shutdown took more than %s s", timeout)
            task.cancel()
            return
        if outcome == "failed":
            log.error("the application's lifespan shutdown failed: %s", self._failure)
        elif outcome != "complete":
            log.error("the application's lifespan ended without completing its shutdown")

    async def _main(self) -> None:
        scope = {"type": "lifespan", "asgi": ASGI_VERSION, "state": self.state}
        try:
            await self.app(scope, self._receive, self._send)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            if self.mode == "auto" and not self._started and self._failure == "":
                log.info("the application does not support ASGI lifespan (%r); going on", exc)
                self._answer("unsupported")
                return
            self._failure = self._failure or f"{type(exc).__name__}: {exc}"
            log.error("Exception in the ASGI lifespan", exc_info=exc)
            self._answer("failed")
            return
        self._answer("returned")

    async def _receive(self) -> dict[str, Any]:
        assert self._events is not None
        return await self._events.get()

    async def _send(self, message: MutableMapping[str, Any]) -> None:
        kind = message["type"]
        if kind in ("lifespan.startup.complete", "lifespan.shutdown.complete"):
            self._answer("complete")
        elif kind in ("lifespan.startup.failed", "lifespan.shutdown.failed"):
            self._failure = str(message.get("message", "")) or "(no message)"
            self._answer("failed")
        else:
            raise RuntimeError(f"unexpected ASGI lifespan message {kind!r}")

    def _answer(self, outcome: str) -> None:
        answered = self._answered
        if answered is not None and not answered.done():
            answered.set_result(outcome)
