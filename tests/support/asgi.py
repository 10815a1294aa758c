"""An ASGI server in a background thread for in-process tests, and small ASGI apps.

``AsgiThread(app)`` runs an :mod:`ioreactor.aio` loop in a thread with a TcpServer
whose handler is the ASGI server's (:class:`~ioreactor.http.asgi.AsgiHandler`): the
same objects ``ioreactor serve`` builds in each worker, minus the process. The test
talks to ``port`` with blocking sockets or real clients; ``call(fn)`` runs ``fn`` on the
loop's thread; ``AioThread(handler)`` does the same for any HTTP handler (a native App
with ``async def`` routes). ``echo_app`` answers like the native echo application (``GET /``,
``POST|PUT /echo``, ``GET /echo``), so one suite can run against both servers.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Awaitable, Callable, MutableMapping
from types import TracebackType
from typing import Any, Self, TypeVar

import ioreactor.aio
from ioreactor.http.asgi import AsgiDispatcher, AsgiHandler
from ioreactor.http.handler import HttpHandler
from ioreactor.http.limits import Limits
from ioreactor.net.server import TcpServer

T = TypeVar("T")
Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
#: Seconds anything a test waits for may take (generous: the machine is shared).
TIMEOUT = 20.0


class AioThread:
    """Serves ``handler`` (an HttpHandler) on 127.0.0.1 from an ioreactor.aio loop in a
    thread: the reactor is the asyncio loop's, as in a serving process."""

    def __init__(self, handler: HttpHandler, *, high_water_mark: int | None = None) -> None:
        self.handler = handler
        self.high_water_mark = high_water_mark
        self.loop: ioreactor.aio.Loop | None = None
        self.server: TcpServer | None = None
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="asgi-server", daemon=True)

    def __enter__(self: Self) -> Self:
        self._thread.start()
        if not self._ready.wait(TIMEOUT):
            raise RuntimeError("the ASGI server did not start")
        if self._failure is not None:
            raise self._failure
        assert self.server is not None
        #: The port it listens on.
        self.port: int = self.server.port
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        loop = self.loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(loop.stop)
        self._thread.join(TIMEOUT)

    def call(self, fn: Callable[[], T]) -> T:
        """Run ``fn()`` on the loop's thread and return its result."""
        assert self.loop is not None
        future: concurrent.futures.Future[T] = concurrent.futures.Future()

        def run() -> None:
            try:
                future.set_result(fn())
            except BaseException as exc:  # handed to the caller
                future.set_exception(exc)

        self.loop.call_soon_threadsafe(run)
        return future.result(TIMEOUT)

    def run(self, coro: Awaitable[T]) -> T:
        """Await ``coro`` on the loop (from the test's thread)."""
        assert self.loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(TIMEOUT)  # type: ignore[arg-type]

    def _main(self) -> None:
        loop = self.loop = ioreactor.aio.new_event_loop()
        try:
            loop.run_until_complete(self.handler.startup())
            options = (
                {}
                if self.high_water_mark is None
                else {
                    "high_water_mark": self.high_water_mark,
                    "low_water_mark": self.high_water_mark // 2,
                }
            )
            self.server = TcpServer(loop.reactor, "127.0.0.1:0", self.handler, **options).start()
        except BaseException as exc:
            self._failure = exc
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        try:
            loop.run_forever()
            loop.run_until_complete(self.handler.shutdown())
        finally:
            self.server.close()
            for task in asyncio.all_tasks(loop):
                task.cancel()
            loop.run_until_complete(asyncio.sleep(0))
            loop.close()


class AsgiThread(AioThread):
    """Serves the ASGI ``app`` (an AsgiDispatcher with ``dispatcher_options``)."""

    def __init__(
        self,
        app: Callable[[Scope, Receive, Send], Awaitable[None]],
        *,
        limits: Limits | None = None,
        high_water_mark: int | None = None,
        **dispatcher_options: Any,
    ) -> None:
        self.dispatcher = AsgiDispatcher(app, **dispatcher_options)
        super().__init__(AsgiHandler(self.dispatcher, limits), high_water_mark=high_water_mark)


async def read_body(receive: Receive) -> bytes:
    body = b""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return body
        body += message.get("body", b"")
        if not message.get("more_body", False):
            return body


async def respond(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    fields = headers if headers is not None else [(b"content-type", b"text/plain; charset=utf-8")]
    await send({"type": "http.response.start", "status": status, "headers": fields})
    await send({"type": "http.response.body", "body": body})


async def echo_app(scope: Scope, receive: Receive, send: Send) -> None:
    """The native echo application's routes, as an ASGI application."""
    if scope["type"] != "http":
        return
    method, path = scope["method"], scope["path"]
    if path == "/" and method in ("GET", "HEAD"):
        await respond(send, 200, b"Hello, World!")
    elif path == "/echo" and method in ("POST", "PUT"):
        body = await read_body(receive)
        content_type = dict(scope["headers"]).get(b"content-type", b"application/octet-stream")
        await respond(send, 200, body, [(b"content-type", content_type)])
    elif path == "/echo" and method in ("GET", "HEAD"):
        target = scope["raw_path"] + (
            b"?" + scope["query_string"] if scope["query_string"] else b""
        )
        lines = [b"%s %s HTTP/%s" % (method.encode(), target, scope["http_version"].encode())]
        lines.extend(name + b": " + value for name, value in scope["headers"])
        await respond(send, 200, b"\n".join(lines) + b"\n")
    elif path in ("/", "/echo"):
        await respond(send, 405, b"405 Method Not Allowed\n")
    else:
        await read_body(receive)
        await respond(send, 404, b"404 Not Found\n")
