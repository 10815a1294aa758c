"""Where ioreactor's own handlers meet asyncio: start coroutines, await back-pressure.

One loop, one thread: a native :class:`~ioreactor.net.server.TcpServer` started on
``loop.reactor`` and asyncio code share the :class:`Loop`. A native handler starts a
coroutine with :func:`start` (for instance from ``on_message``), and that coroutine
awaits :func:`drain` to wait until the connection's queued output has gone out::

    class Slow(Handler):
        def on_message(self, conn, buffer):
            ioreactor.aio.start(conn, self.answer(conn, buffer.read_all()))

        async def answer(self, conn, request):
            reply = await lookup(request)          # any asyncio code
            conn.send(reply)
            await ioreactor.aio.drain(conn)        # back-pressure, as StreamWriter.drain()

:func:`drain` watches a duplicate of the connection's fd for writability, which the
kernel reports in the same poll as the connection's own fd: it wakes after each chance
the connection had to write, without a callback in the connection's hot path.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, TypeVar, cast

from ioreactor.loop.event_loop import EventLoop
from ioreactor.net.connection import TcpConnection

if TYPE_CHECKING:
    from ioreactor.aio.core import LoopCore
    from ioreactor.aio.loop import Loop

T = TypeVar("T")

#: Seconds between checks of a closed connection while drain() waits for writability.
DRAIN_RECHECK = 1.0

#: The asyncio loop driving each reactor.
_LOOPS: weakref.WeakKeyDictionary[EventLoop, Loop] = weakref.WeakKeyDictionary()


def register(reactor: EventLoop, loop: LoopCore) -> None:
    """Record that ``loop`` drives ``reactor`` (the Loop does it when created)."""
    _LOOPS[reactor] = cast("Loop", loop)  # LoopCore.__init__ of a Loop


def loop_of(where: TcpConnection | EventLoop) -> Loop:
    """The asyncio loop that drives a connection's (or a reactor's) loop."""
    reactor = where.loop if isinstance(where, TcpConnection) else where
    loop = _LOOPS.get(reactor)
    if loop is None:
        raise RuntimeError(f"{reactor!r} is not driven by an ioreactor.aio loop")
    return loop


def start(
    where: TcpConnection | EventLoop, coro: Coroutine[Any, Any, T], *, name: str | None = None
) -> asyncio.Task[T]:
    """Run ``coro`` as a task on the asyncio loop of ``where`` (loop thread)."""
    return loop_of(where).create_task(coro, name=name)


async def drain(conn: TcpConnection, low: int = 0) -> None:
    """Wait until at most ``low`` bytes of ``conn``'s output are queued.

    Raises ``ConnectionResetError`` if the connection is closed (what was queued is lost).
    """
    loop = loop_of(conn)
    dup = None
    try:
        while True:
            if conn.closed:
                raise ConnectionResetError(f"{conn!r} is closed")
            if conn.output_size <= low:
                return
            if dup is None:
                dup = conn.sock.dup()
                dup.setblocking(False)
            try:
                await asyncio.wait_for(loop.writable(dup), DRAIN_RECHECK)
            except TimeoutError:
                continue
            await asyncio.sleep(0)  # the connection writes in the same round
    finally:
        if dup is not None:
            dup.close()
