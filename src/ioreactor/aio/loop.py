"""``Loop``: the whole asyncio event loop on the reactor, one class from its parts.

LoopCore     callbacks, timers, running, executors, errors, debug, signals, fds
SocketOps    sock_* coroutines, getaddrinfo, sock_sendfile
StreamOps    TCP / Unix stream transports on TcpConnection, servers, TLS, sendfile
DatagramOps  UDP / Unix datagram endpoints
ProcessOps   pipes and subprocesses (pidfd child watching)
"""

from __future__ import annotations

from ioreactor.aio.pipes import ProcessOps


class Loop(ProcessOps):
    """asyncio's event loop on ioreactor (``poller``: epoll, epoll-et, poll, select,
    uring, ...; default epoll). ``loop.reactor`` is the ioreactor EventLoop underneath,
    on which native ioreactor servers and clients run in the same thread."""
