"""The ASGI server: an HTTP dispatcher that runs an ASGI 3 application on asyncio.

Data flow::

    HttpProtocol (parser, response queue, lifecycle: the native server's, unchanged)
        --request(protocol, request)--> a scope, an HttpCycle with its place in the
          response queue, and one asyncio Task running app(scope, receive, send)
        --body / end--> that cycle's receive(); the connection gone --> http.disconnect
        --an Upgrade: websocket--> a WebSocketCycle (websocket.py): the app accepts,
          the connection is handed over to the WebSocket session after the 101

The application runs on the asyncio loop that drives the connection's reactor
(:mod:`ioreactor.aio`: one loop, one thread), so everything it sends during a loop
iteration leaves in one ``send`` per connection at the end of that iteration.

One Task per request, whose first step runs at once (:mod:`ioreactor.http.tasks`):
measured against a Task scheduled through the ready queue and against driving the
coroutine by hand (docs/asgi.md), running the first step at once saves about 3 µs of
server CPU per "hello" request, and an eager Task keeps ``asyncio.current_task()`` right
for anyio (Starlette, FastAPI), which a hand-driven coroutine does not. A request
answered before its application first waits is answered inside the read that brought
it: its response joins that read's single ``send``.

Everything a request must not be allowed to break is the native server's and applies
before the application sees a byte: the hostile-input defences of the parser, every
limit and timeout, pipelining in order, back-pressure.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any

from ioreactor.codec.websocket import CloseCode
from ioreactor.http.asgi.cycle import HttpCycle
from ioreactor.http.asgi.lifespan import Lifespan
from ioreactor.http.asgi.scope import ScopeFactory, address_pair
from ioreactor.http.asgi.websocket import AsgiWebSocketHandler, WebSocketCycle, WebSocketOptions
from ioreactor.http.dispatch import LATER, Dispatcher
from ioreactor.http.tasks import start_task

if TYPE_CHECKING:
    from ioreactor.http.forwarding import ForwardedHeaders
    from ioreactor.http.protocol import HttpProtocol
    from ioreactor.http.request import Request

log = logging.getLogger("ioreactor.asgi")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class AsgiConnection:
    """The ASGI state of one HTTP connection (``protocol.context``)."""

    __slots__ = (
        "addresses",
        "continue_next",
        "cycles",
        "done",
        "drain_waiters",
        "loop",
        "receiving",
        "websocket",
    )

    def __init__(self, protocol: HttpProtocol, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        #: What a ``send()`` that needs no wait returns: a Future, already done (awaiting
        #: it is one C call; any number of awaits may share it).
        self.done: asyncio.Future[None] = loop.create_future()
        self.done.set_result(None)
        conn = protocol.conn
        #: ``(client, server)`` as ASGI writes them, read once per connection.
        self.addresses = (address_pair(conn.peer), address_pair(conn.local_address()))
        #: The cycle whose request body is arriving (None between bodies).
        self.receiving: HttpCycle | None = None
        #: The requests whose application still runs, oldest first.
        self.cycles: list[HttpCycle] = []
        #: Cycles whose send() waits for the output to drain.
        self.drain_waiters: list[HttpCycle] = []
        #: The next request's client waits for ``100 Continue``.
        self.continue_next = False
        #: The WebSocket the connection's last request asked for (until the hand-over).
        self.websocket: WebSocketCycle | None = None

    def wake_drained(self) -> None:
        """The connection's output drained (or a response got its turn): wake the
        sends that wait for it."""
        for cycle in self.drain_waiters:
            cycle.wake()


class AsgiDispatcher(Dispatcher):
    """Runs an ASGI 3 application for every request of a server (module docstring).

    ``root_path``: the prefix the application is mounted under (``--root-path``).
    ``forwarded``: the trusted forwarding headers (``--proxy-headers``; None: no
    forwarding field is read). ``lifespan``: ``auto``, ``on`` or ``off``.
    ``websocket``: the WebSocket session's limits and permessage-deflate.
    """

    __slots__ = ("app", "lifespan", "orphans", "scopes", "websockets")

    def __init__(
        self,
        app: ASGIApp,
        *,
        root_path: str = "",
        forwarded: ForwardedHeaders | None = None,
        lifespan: str = "auto",
        websocket: WebSocketOptions | None = None,
    ) -> None:
        self.app = app
        self.lifespan = Lifespan(app, lifespan)
        self.scopes = ScopeFactory(
            root_path=root_path, forwarded=forwarded, state=self.lifespan.state
        )
        self.websockets = AsgiWebSocketHandler(websocket or WebSocketOptions())
        #: Tasks of requests whose connection closed while the application still ran
        #: (cancelled at the end of a graceful shutdown).
        self.orphans: set[asyncio.Task[None]] = set()

    def __repr__(self) -> str:
        return f"<AsgiDispatcher {self.app!r}>"

    # -- the Dispatcher seam ----------------------------------------------------------------

    def needs_asyncio(self) -> bool:
        return True

    def request(self, protocol: HttpProtocol, request: Request) -> object:
        connection = protocol.context
        if connection is None:
            connection = protocol.context = AsgiConnection(protocol, asyncio.get_running_loop())
        if protocol.parser.upgrading and WebSocketCycle.wanted(request):
            WebSocketCycle.start(self, connection, protocol, request)
            return LATER
        cycle = HttpCycle(connection, protocol, request, protocol.queue.reserve(request))
        if connection.continue_next:
            connection.continue_next = False
            cycle.continue_owed = True
        if request.body is None:
            connection.receiving = cycle
        client, server = connection.addresses
        scope = self.scopes.http(request, client, server)
        connection.cycles.append(cycle)
        cycle.task = start_task(connection.loop, self._run(connection, cycle, scope))
        return LATER

    def body(self, protocol: HttpProtocol, chunk: bytes) -> None:
        receiving = protocol.context.receiving
        if receiving is not None:
            receiving.body_received(chunk)

    def end(self, protocol: HttpProtocol, request: Request) -> object:
        connection: AsgiConnection = protocol.context
        receiving = connection.receiving
        if receiving is not None:
            connection.receiving = None
            receiving.body_ended()
        return LATER

    def expect_continue(self, protocol: HttpProtocol) -> None:
        """Sent when the application first asks for the body (HttpCycle.receive)."""
        connection = protocol.context
        if connection is None:
            connection = protocol.context = AsgiConnection(protocol, asyncio.get_running_loop())
        connection.continue_next = True

    def closed(self, protocol: HttpProtocol) -> None:
        connection: AsgiConnection | None = protocol.context
        if connection is None:
            return
        for cycle in connection.cycles:
            cycle.client_gone()
            if cycle.task is not None:
                self.orphans.add(cycle.task)
        websocket = connection.websocket
        if websocket is not None and websocket.session is None:
            self.websockets.forget(protocol.conn)
            websocket.ended(CloseCode.ABNORMAL, "")

    def broken(self, protocol: HttpProtocol) -> None:
        connection: AsgiConnection | None = protocol.context
        if connection is not None and connection.receiving is not None:
            connection.receiving.abandon()
            connection.receiving = None

    async def startup(self) -> None:
        await self.lifespan.startup()

    async def shutdown(self) -> None:
        """After a graceful stop: cancel what still runs of closed connections, then
        the lifespan's shutdown."""
        for task in list(self.orphans):
            task.cancel()
        if self.orphans:
            await asyncio.wait(self.orphans, timeout=1.0)
        await self.lifespan.shutdown()

    # -- running the application ------------------------------------------------------------

    async def _run(self, connection: AsgiConnection, cycle: HttpCycle, scope: Scope) -> None:
        error: BaseException | None = None
        try:
            await self.app(scope, cycle.receive, cycle.send)
        except BaseException as exc:  # reported by the cycle: a 500, or the close
            error = exc
        cycle.finished(error)
        connection.cycles.remove(cycle)
        if cycle.disconnected:
            if connection.receiving is cycle:
                connection.receiving = None
            if cycle.task is not None:
                self.orphans.discard(cycle.task)
        cycle.task = None
        if isinstance(error, KeyboardInterrupt | SystemExit):
            raise error
