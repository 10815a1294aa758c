"""One serving process: its loop, its :class:`TcpServer`, and how it stops.

The same code serves in the calling process (``workers=0``) and in each forked worker.
A worker differs in three ways: it listens with SO_REUSEPORT or takes connections
from its channel (fdpass); it tells the supervisor when it is ready (and, for
least-connections balancing, how many connections it holds); and it stops when the
supervisor says so (SIGTERM graceful, SIGQUIT forced) or when the supervisor is gone
(its channel closes).

Two ways out, both graceful, both starting with a drain (the process's health check
answers 503, every connection's next response closes it: :meth:`TcpServer.drain`):

leave (SIGTERM)   the server is stopping: keep serving and accepting for
                  ``drain_delay`` seconds (a balancer sees the 503s and stops sending),
                  then shut down
retire ("X" on    a replacement serves the same listeners (reload, recycling): stop
the channel)      accepting at once, let connections end with their next response for
                  ``drain_delay`` seconds (RETIRE_GRACE at least), then shut down

Shut down: take whatever fds are still queued on the channel (they were accepted, so
they are served), then :meth:`TcpServer.shutdown`: stop accepting, ``on_shutdown`` for
every connection, force-close at the timeout; exit 0.

A worker whose supervisor asked for it also tells it it is alive (the systemd watchdog)
and, with ``max_requests``, asks to be replaced once it has served that many requests.

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
import random
import signal
import socket
from collections.abc import Callable
from typing import Protocol, cast

from ioreactor.http.health import HEALTH
from ioreactor.http.server import HttpServer
from ioreactor.loop.backends import new_loop
from ioreactor.loop.event_loop import EventLoop
from ioreactor.multicore.channel import WorkerChannel
from ioreactor.multicore.config import ServeConfig, WorkerContext
from ioreactor.multicore.metrics import MetricsSlot, WorkerMetrics, exposition, serve_metrics
from ioreactor.multicore.signals import CONTROL_SIGNALS, FORCED_EXIT, StopSignals
from ioreactor.net.address import format_sockname
from ioreactor.net.handlers import Handler
from ioreactor.net.proxy_protocol import ProxyProtocolHandler
from ioreactor.net.server import TcpServer
from ioreactor.net.sockopt import raise_nofile_limit
from ioreactor.net.systemd import Notifier

log = logging.getLogger("ioreactor.multicore")

#: How often a worker tells the supervisor its connection count (least-connections only).
LOAD_REPORT_INTERVAL = 0.05
#: How often a worker checks its request count against ``max_requests``.
RECYCLE_CHECK_INTERVAL = 0.2
#: Seconds a retiring worker gives its connections, at least, to end with their next
#: response (``Connection: close``) before the idle ones are closed: a client that sends
#: on a keep-alive connection in the instant the server closes it loses that request.
RETIRE_GRACE = 1.0
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
        listener: socket.socket | None = None,
        on_worker_start: Callable[[WorkerContext], object] | None = None,
        requests_served: Callable[[], int] | None = None,
        alive_interval: float | None = None,
        metrics_slot: MetricsSlot | None = None,
    ) -> None:
        self.config = config
        self.make_handler = make_handler
        self.index = index
        self.channel_sock = channel
        #: The socket to accept on (a supervisor's, or inherited); None: bind one.
        self.listener = listener
        self.on_worker_start = on_worker_start
        #: Requests this process has served (for ``max_requests``; None: not counted).
        self.requests_served = requests_served
        #: Seconds between "alive" messages to the supervisor (None: not asked for).
        self.alive_interval = alive_interval
        #: Where this worker publishes its numbers (the supervisor reads them).
        self.metrics_slot = metrics_slot
        self._metrics: WorkerMetrics | None = None
        self._exporter: HttpServer | None = None
        self._request_limit = 0
        self._notifier: Notifier | None = None
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
            if config.proxy_protocol is not None:
                handler = ProxyProtocolHandler(handler, config.proxy_protocol)
            server = self._server = TcpServer(
                loop,
                config.address,
                handler,
                listener=self.listener,
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
                    loop, self.channel_sock, self._adopt_fds, self._parent_gone, self.retire
                )
                if fdpass_worker and config.balance == "least-connections":
                    loop.call_every(LOAD_REPORT_INTERVAL, self._report_load)
                if self.alive_interval is not None:
                    loop.call_every(self.alive_interval, self._channel.alive)
                if config.max_requests and self.requests_served is not None:
                    jitter = random.randint(0, config.max_requests_jitter)
                    self._request_limit = config.max_requests + jitter
                    loop.call_every(RECYCLE_CHECK_INTERVAL, self._check_requests)
            self._start_metrics(loop, server)
            if self.on_worker_start is not None:
                self.on_worker_start(WorkerContext(self.index, os.getpid(), loop, server))
            if self._channel is not None:
                self._channel.ready()
            if fdpass_worker:
                log.info("%s (pid %d) serving fds from the supervisor", self.name, os.getpid())
            else:
                where = format_sockname(config.address.kind, server.sockname)
                log.info("%s (pid %d) listening on %s", self.name, os.getpid(), where)
                if not self.is_worker:
                    self._notify_systemd(loop, where)
            if driver is not None:
                driver.run()
            else:
                loop.run()
        finally:
            if self._metrics is not None:
                self._metrics.flush()  # the last numbers: the supervisor keeps them
            if self._exporter is not None:
                self._exporter.close()
            if self._server is not None:
                self._server.close()
            if self._channel is not None:
                self._channel.close()
            if self._signals is not None:
                self._signals.close()
            if self._notifier is not None:
                self._notifier.close()
            if driver is not None:
                driver.close()
            else:
                loop.close()
        return self.exit_code

    def _start_metrics(self, loop: EventLoop, server: TcpServer) -> None:
        """Publish to the supervisor's slot; without a supervisor, serve /metrics here."""
        slot = self.metrics_slot
        listen = self.config.metrics_listen
        if slot is None and listen is not None and not self.is_worker:
            slot = MetricsSlot()
        if slot is None:
            return
        metrics = self._metrics = WorkerMetrics(loop, server, slot)
        metrics.start()
        if listen is not None and not self.is_worker:
            self._exporter = serve_metrics(loop, listen, lambda: exposition(metrics.values()))
            log.info(
                "%s: metrics on http://%s/metrics",
                self.name,
                format_sockname("tcp", self._exporter.sockname).removeprefix("tcp://"),
            )

    def _notify_systemd(self, loop: EventLoop, where: str) -> None:
        """Serving alone (no supervisor): READY=1 now, WATCHDOG=1 from this loop."""
        notifier = self._notifier = Notifier(unset_environment=True)
        notifier.ready(f"serving {where}: {self.config.describe()}")
        interval = notifier.watchdog_interval()
        if interval is not None:
            loop.call_every(interval, notifier.watchdog)

    def _install_signals(self, loop: EventLoop) -> None:
        if self.is_worker:
            for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGUSR2):  # the supervisor's
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

    def _check_requests(self) -> None:
        assert self.requests_served is not None
        served = self.requests_served()
        if self._request_limit and served >= self._request_limit and self._channel is not None:
            log.info(
                "%s (pid %d) served %d requests (--max-requests %d): asking for a replacement",
                self.name,
                os.getpid(),
                served,
                self._request_limit,
            )
            self._request_limit = 0  # asked once
            self._channel.recycle("max-requests")

    # -- stopping -----------------------------------------------------------------------

    def stop(self) -> None:
        """Leave (SIGTERM): drain, keep serving and accepting for ``drain_delay``
        seconds, then shut down; loop thread."""
        if not self._start_draining():
            return
        self._shut_down_after(self.config.drain_delay)

    def retire(self) -> None:
        """Replaced (the supervisor's "X"): stop accepting now -- the replacement takes
        the connections -- drain, and shut down after ``drain_delay``; loop thread."""
        if not self._start_draining():
            return
        assert self._server is not None
        if self._channel is not None and self.config.dispatch == "fdpass":
            self._channel.receive()  # accepted connections still queued: serve them too
        self._server.stop_accepting()
        log.info("%s (pid %d) replaced: no longer accepting", self.name, os.getpid())
        self._shut_down_after(max(RETIRE_GRACE, self.config.drain_delay))

    def _start_draining(self) -> bool:
        if self._stopping or self._server is None or self._loop is None:
            return False
        self._stopping = True
        if self._notifier is not None:
            self._notifier.stopping("draining")
        HEALTH.start_draining()
        self._server.drain()
        return True

    def _shut_down_after(self, delay: float) -> None:
        assert self._loop is not None
        if delay > 0:
            self._loop.call_later(delay, self._shut_down)
        else:
            self._shut_down()

    def _shut_down(self) -> None:
        """Serve what was handed over, then shut the server down."""
        assert self._server is not None and self._loop is not None
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
