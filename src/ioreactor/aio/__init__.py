"""asyncio's event loop on the reactor: asyncio programs on ioreactor's loop.

    poller -> EventLoop -> TcpConnection -> ProtocolHandler.on_read
           -> protocol.data_received -> transport.write -> conn.send
           -> one send per loop iteration -> kernel

Use it like uvloop::

    import ioreactor.aio
    ioreactor.aio.run(main())              # or: ioreactor.aio.install(); asyncio.run(main())
"""

from ioreactor.aio.loop import Loop
from ioreactor.aio.native import drain, loop_of, start
from ioreactor.aio.policy import EventLoopPolicy, install, new_event_loop, run
from ioreactor.aio.server import Server

__all__ = [
    "EventLoopPolicy",
    "Loop",
    "Server",
    "drain",
    "install",
    "loop_of",
    "new_event_loop",
    "run",
    "start",
]
