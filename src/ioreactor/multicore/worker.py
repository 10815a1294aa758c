"""One serving process: its loop, its :class:`TcpServer`, and how it stops.

The same code serves in the calling process (``workers=0``) and in each forked worker.
A worker differs in three ways: it listens with SO_REUSEPORT or takes connections
from its channel (fdpass); it tells the supervisor when it is ready (and, for
least-connections balancing, how many connections it holds); and it stops when the
supervisor says so (SIGTERM graceful, SIGQUIT forced) or when the supervisor is gone
(its channel closes).

Graceful stop: take whatever fds are still queued on the channel (they were accepted,
so they are served), then :meth:`TcpServer.shutdown`: stop accepting, ``on_shutdown``
for every connection, force-close at the timeout; exit 0.

A handler whose application awaits (an ASGI application, an ``App`` with ``async def``
routes: ``handler.needs_asyncio()``) is served on :mod:`ioreactor.aio`'s loop, which
drives the process's reactor (one loop, one thread): its ``startup()`` (ASGI lifespan)
runs before the server listens -- a failure ends the process with
``STARTUP_FAILED`` before it accepts a connection -- and its ``shutdown()`` after the
graceful stop has let the requests in flight finish.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
from collections.abc import Callable
from typing import Protocol, cast

from ioreactor.loop.backends import new_loop
from ioreactor.loop.event_loop import EventLoop
from ioreactor.multicore.channel import WorkerChannel
from ioreactor.multicore.config import ServeConfig, WorkerContext
from ioreactor.multicore.signals import CONTROL_SIGNALS, FORCED_EXIT, StopSignals
from ioreactor.net.address import format_sockname
from ioreactor.net.handlers import Handler
from ioreactor.net.server import TcpServer
from ioreactor.net.sockopt import raise_nofile_limit

log = logging.getLogger("ioreactor.multicore")

#: How often a worker tells the supervisor its connection count (least-connections only).
LOAD_REPORT_INTERVAL = 0.05
#: Exit status of a serving process whose application failed to start (uvicorn's 3).
STARTUP_FAILED = 3


class AsyncioService(Protocol):
    """What a handler whose application awaits offers its serving process."""

    def needs_asyncio(self) -> bool: ...

    async def startup(self) -> None: ...

    async def shutdown(self) -> None: ...


def asyncio_service(handler: Handler) -> AsyncioService | None:
    """``handler`` if its application must run on an asyncio loop, else None."""
    needs = getattr(handler, "needs_asyncio", None)
    if needs is not None and needs():
        return cast("AsyncioService", handler)
    return None


class AsyncioDriver:
    """Runs a serving process's reactor under :mod:`ioreactor.aio`'s loop."""

    def __init__(self, service: AsyncioService, poller: str | None, name: str) -> None:
        from ioreactor.aio import Loop

        self.service = service
        self.name = name
        self.aio = Loop(poller)
        self.reactor = self.aio.reactor

    def startup(self) -> bool:
        """The application's startup, before the server listens; False if it failed."""
        try:
            self.aio.run_until_complete(self.service.startup())
        except Exception as exc:
            log.error("%s: the application failed to start: %s", self.name, exc)
            return False
        return True

    def run(self) -> None:
        self.aio.run_forever()

    def stop_after_shutdown(self) -> None:
        """The server is drained: the application's shutdown, then the loop stops."""
        self.aio.create_task(self._shutdown())

    async def _shutdown(self) -> None:
        try:
            await self.service.shutdown()
        except Exception:
            log.exception("%s: the application's shutdown failed", self.name)
        finally:
            self.aio.stop()

    def stop(self) -> None:
        self.aio.stop()

    def close(self) -> None:
        """Cancel what still runs, finish async generators, close loop and reactor."""
        import asyncio  # (only a process serving such an application loads asyncio)

        aio = self.aio
        tasks = [t for t in asyncio.all_tasks(aio) if not t.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            aio.run_until_complete(asyncio.wait(tasks, timeout=1.0))
        aio.run_until_complete(aio.shutdown_asyncgens())
        aio.close()


class ServerProcess:
    """Builds and runs the server of this process; :meth:`run` returns the exit status."""

    def __init__(
        self,
        config: ServeConfig,
        make_handler: Callable[[], Handler],
        *,
        index: int = 0,
        channel: socket.socket | None = None,
        on_worker_start: Callable[[WorkerContext], object] | None = None,
    ) -> None:
        self.config = config
        self.make_handler = make_handler
        self.index = index
        self.channel_sock = channel
        self.on_worker_start = on_worker_start
        self.name = f"worker {index}" if channel is not None else "server"
        self.exit_code = 0
        self._channel: WorkerChannel | None = None
        self._server: TcpServer | None = None
        self._loop: EventLoop | None = None
        self._driver: AsyncioDriver | None = None
        self._signals: StopSignals | None = None
        self._last_report = (-1, -1)
        self._stopping = False

    @property
    def is_worker(self) -> bool:
        return self.channel_sock is not None

    def run(self) -> int:
        """Serve until stopped. In a worker, signals blocked around fork are unblocked here."""
        config = self.config
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)
        raise_nofile_limit()
        handler = self.make_handler()
        service = asyncio_service(handler)
        driver = None
        if service is not None:
            if config.loops:
                log.error(
                    "%s: an application that awaits runs on one loop per process; "
                    "use workers instead of --loops",
                    self.name,
                )
                return 2
            driver = self._driver = AsyncioDriver(service, config.poller, self.name)
            loop = self._loop = driver.reactor
        else:
            loop = self._loop = new_loop(config.poller, name=f"worker-{self.index}")
        try:
            if driver is not None and not driver.startup():
                return STARTUP_FAILED
            server = self._server = TcpServer(
                loop,
                config.address,
                handler,
                backlog=config.backlog,
                reuse_port=self.is_worker and config.dispatch == "reuseport",
                loops=config.loops,
                balance=config.balance,
                poller=config.poller,
                name=f"w{self.index}" if self.is_worker else "server",
                **config.server_options,
            )
            fdpass_worker = self.is_worker and config.dispatch == "fdpass"
            try:
                server.start(listen=not fdpass_worker)
            except OSError as exc:
                log.error("%s: cannot listen on %s: %s", self.name, config.address, exc)
                return 1
            self._install_signals(loop)
            if self.channel_sock is not None:
                self._channel = WorkerChannel(
                    loop, self.channel_sock, self._adopt_fds, self._parent_gone
                )
                if fdpass_worker and config.balance == "least-connections":
                    loop.call_every(LOAD_REPORT_INTERVAL, self._report_load)
            if self.on_worker_start is not None:
                self.on_worker_start(WorkerContext(self.index, os.getpid(), loop, server))
            if self._channel is not None:
                self._channel.ready()
            if fdpass_worker:
                log.info("%s (pid %d) serving fds from the supervisor", self.name, os.getpid())
            else:
                where = format_sockname(config.address.kind, server.sockname)
                log.info("%s (pid %d) listening on %s", self.name, os.getpid(), where)
            if driver is not None:
                driver.run()
            else:
                loop.run()
        finally:
            if self._server is not None:
                self._server.close()
            if self._channel is not None:
                self._channel.close()
            if self._signals is not None:
                self._signals.close()
            if driver is not None:
                driver.close()
            else:
                loop.close()
        return self.exit_code

    def _install_signals(self, loop: EventLoop) -> None:
        if self.is_worker:
            for sig in (signal.SIGINT, signal.SIGHUP):  # orders come from the supervisor
                signal.signal(sig, signal.SIG_IGN)
            self._signals = StopSignals(
                loop,
                graceful=self.stop,
                force=self.force_stop,
                graceful_signals=(signal.SIGTERM,),
                force_signals=(signal.SIGQUIT,),
                name=self.name,
            )
            signal.pthread_sigmask(signal.SIG_UNBLOCK, CONTROL_SIGNALS)
        else:
            self._signals = StopSignals(
                loop, graceful=self.stop, force=self.force_stop, name=self.name
            )

    # -- connections from the channel -----------------------------------------------------

    def _adopt_fds(self, fds: list[int], family: int) -> None:
        server = self._server
        assert server is not None
        for fd in fds:
            sock = socket.socket(family, socket.SOCK_STREAM, 0, fileno=fd)
            sock.setblocking(False)
            server.adopt(sock)

    def _report_load(self) -> None:
        if self._channel is None or self._server is None:
            return
        counts = (self._server.connection_count, self._channel.received)
        if counts != self._last_report:
            self._last_report = counts
            self._channel.report(counts[0])

    def _parent_gone(self) -> None:
        log.warning("%s: the supervisor is gone; stopping", self.name)
        self.stop()

    # -- stopping -----------------------------------------------------------------------

    def stop(self) -> None:
        """Graceful: serve what was handed over, then shut the server down; loop thread."""
        if self._stopping or self._server is None or self._loop is None:
            return
        self._stopping = True
        if self._channel is not None and self.config.dispatch == "fdpass":
            self._channel.receive()  # accepted connections still queued: serve them too
        done = self._loop.stop if self._driver is None else self._driver.stop_after_shutdown
        self._server.shutdown(self.config.shutdown_timeout, on_done=done)

    def force_stop(self) -> None:
        """Stop now: the loop ends and every connection is force-closed."""
        self.exit_code = FORCED_EXIT
        if self._driver is not None:
            self._driver.stop()
        elif self._loop is not None:
            self._loop.stop()
