"""``run_server``: one entry point for every way of serving on one or many cores."""

from __future__ import annotations

import socket
from collections.abc import Callable, Sequence
from typing import Any

from ioreactor.multicore.config import (
    Dispatch,
    ServeConfig,
    WorkerContext,
    default_dispatch,
    default_workers,
)
from ioreactor.multicore.supervisor import Supervisor
from ioreactor.multicore.worker import ServerProcess
from ioreactor.net.acceptor import BACKLOG
from ioreactor.net.address import Address, to_address
from ioreactor.net.handlers import Handler
from ioreactor.net.proxy_protocol import ProxyTrust
from ioreactor.net.server import SHUTDOWN_TIMEOUT, Balance
from ioreactor.net.systemd import listening_address


def run_server(
    make_handler: Callable[[], Handler],
    address: str | Address | tuple[str, int],
    *,
    workers: int | None = None,
    loops: int = 0,
    dispatch: Dispatch | None = None,
    balance: Balance = "round-robin",
    poller: str | None = None,
    backlog: int = BACKLOG,
    shutdown_timeout: float = SHUTDOWN_TIMEOUT,
    on_worker_start: Callable[[WorkerContext], object] | None = None,
    listeners: Sequence[socket.socket] = (),
    proxy_protocol: ProxyTrust | None = None,
    drain_delay: float = 0.0,
    max_requests: int = 0,
    max_requests_jitter: int = 0,
    max_rss: int = 0,
    metrics_listen: str | Address | None = None,
    reload_handler: Callable[[], Callable[[], Handler]] | None = None,
    requests_served: Callable[[], int] | None = None,
    **server_options: Any,
) -> int:
    """Serve ``make_handler()`` on ``address`` until a stop signal; returns the exit status.

    ``workers``: processes to fork (None: one per core; 0: serve in this process, no
    supervisor). ``loops``: sub-reactor threads per serving process (0: one loop does it
    all). ``dispatch``: ``"reuseport"`` (each worker listens; the default for TCP on
    Linux) or ``"fdpass"`` (this process accepts and passes fds; any stream address,
    Unix sockets included). ``balance``: how a connection
    picks a worker (fdpass) and a sub-loop: ``round-robin``, ``least-connections`` or
    ``hash`` (by peer host). ``make_handler`` and ``on_worker_start(ctx)`` run in each
    serving process, after the fork. ``server_options`` go to ``TcpServer`` (nodelay,
    keepalive, high_water_mark, low_water_mark, accept_batch).

    ``listeners``: inherited listening sockets to serve instead of binding ``address``
    (socket activation, ``--fd``); ``proxy_protocol``: the peers whose connections start
    with a PROXY header. ``drain_delay``: seconds a stopping worker keeps serving after
    its health check turns 503. ``max_requests`` (+ a random 0..``max_requests_jitter``,
    counted by ``requests_served()`` in each worker) and ``max_rss`` (MiB) recycle a
    worker: its replacement accepts before it retires. ``metrics_listen``: serve
    Prometheus metrics of every worker there (needs prometheus_client).

    Stops on SIGTERM or SIGINT gracefully (exit 0), or at once on a second SIGINT
    (exit 130). With workers, SIGHUP reloads (``reload_handler()`` gives the new
    ``make_handler``; new workers first, then the old ones retire) and SIGUSR2 upgrades
    (a new supervisor inherits the listeners); without, SIGHUP stops gracefully. Call it
    from the main thread: it installs signal handlers.
    """
    where = listening_address(listeners[0]) if listeners else to_address(address)
    config = ServeConfig(
        address=where,
        workers=default_workers() if workers is None else workers,
        loops=loops,
        dispatch=dispatch or default_dispatch(where),
        balance=balance,
        poller=poller,
        backlog=backlog,
        shutdown_timeout=shutdown_timeout,
        server_options=server_options,
        listeners=tuple(listeners),
        proxy_protocol=proxy_protocol,
        drain_delay=drain_delay,
        max_requests=max_requests,
        max_requests_jitter=max_requests_jitter,
        max_rss=max_rss,
        metrics_listen=None if metrics_listen is None else to_address(metrics_listen),
    )
    if config.workers == 0:
        return ServerProcess(
            config,
            make_handler,
            listener=config.listeners[0] if config.listeners else None,
            on_worker_start=on_worker_start,
        ).run()
    return Supervisor(
        config,
        make_handler,
        on_worker_start=on_worker_start,
        reload_handler=reload_handler,
        requests_served=requests_served,
    ).run()
