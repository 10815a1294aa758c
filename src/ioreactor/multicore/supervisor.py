"""The supervisor: holds the listeners, forks the workers, replaces and restarts them,
stops them all.

::

    supervisor (this process, one loop, no threads)
      listeners        opened here (reuseport: one SO_REUSEPORT socket per worker;
                       fdpass: one) or inherited (socket activation, --fd, an upgrade),
                       kept open for its whole life: a worker that dies or is replaced
                       leaves its queued connections to the next one, never resets them
      SIGCHLD          reap, log the exit cause, restart (now, or after a back-off)
      SIGTERM, SIGINT  stop: workers drain and leave (SIGTERM to every worker), exit 0
      second SIGINT    SIGQUIT to every worker (forced stop), exit FORCED_EXIT
      SIGHUP           reload: the application is imported again, a new worker starts
                       for each one, and once it is ready the old one retires ("X":
                       stop accepting, finish, exit) -- no connection refused or dropped
      SIGUSR2          upgrade: a new supervisor inherits the listeners (upgrade.py),
                       then this one's workers retire and it exits
      recycling        a worker past --max-requests asks ("C"), one past --max-rss is
                       seen here: it is replaced the same way, the reason logged
      systemd          READY=1 once every worker accepts, RELOADING=1 / READY=1 around a
                       reload, STOPPING=1, STATUS= lines, WATCHDOG=1 at half of
                       WATCHDOG_USEC while every worker says it is alive
      fdpass only      the main reactor too: accepts and passes fds (FdDispatcher)
      |-- worker 0 (fork)  ServerProcess: own loop(s), own server, own fd limit
      |-- worker 1 (fork)  ...

Forking from a process that has an event loop needs care, because the child shares
the parent's epoll instance and eventfd: an ``epoll_ctl`` from the child would change
the parent's interest set. So the child never touches the parent's loop. It resets the
supervisor's signal handlers (signals stay blocked from before the fork until its own
handlers are in place), closes every fd the supervisor opened but its own listener and
channel (a plain ``close`` only drops the child's reference), freezes the inherited
objects so no collector ever finalizes them, and leaves with ``os._exit`` so no parent
frame ever unwinds in it.
"""

from __future__ import annotations

import collections
import errno
import gc
import logging
import os
import signal
import socket
import sys
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, NoReturn

from ioreactor.http.metrics import Series
from ioreactor.http.server import HttpServer
from ioreactor.loop.backends import new_loop
from ioreactor.loop.event_loop import EventLoop
from ioreactor.loop.poller import READ
from ioreactor.multicore.channel import ParentChannel, channel_pair
from ioreactor.multicore.config import ServeConfig, WorkerContext
from ioreactor.multicore.dispatcher import FdDispatcher
from ioreactor.multicore.metrics import (
    SERIES,
    MetricsBook,
    MetricsSlot,
    check_available,
    exposition,
    serve_metrics,
)
from ioreactor.multicore.signals import (
    CONTROL_SIGNALS,
    FORCED_EXIT,
    StopSignals,
    describe_exit,
)
from ioreactor.multicore.upgrade import READY, UpgradeHandshake, spawn_successor
from ioreactor.multicore.worker import ServerProcess
from ioreactor.net.acceptor import ACCEPT_BATCH, open_listener
from ioreactor.net.address import Address, format_sockname
from ioreactor.net.sockopt import raise_nofile_limit
from ioreactor.net.systemd import Notifier

if TYPE_CHECKING:
    from collections.abc import Callable

    from ioreactor.loop.timers import TimerHandle
    from ioreactor.net.handlers import Handler

log = logging.getLogger("ioreactor.multicore")

#: A worker that ran at least this long before dying is restarted at once.
HEALTHY_UPTIME = 1.0
#: Wait before the second quick restart in a row; doubles each time after that.
BACKOFF_INITIAL = 0.1
#: Longest wait between restarts of a worker that keeps dying.
BACKOFF_MAX = 10.0
#: A worker that dies before it is ready this many times in a row stops the server.
MAX_FAILED_STARTS = 5
#: After the graceful timeout, how long before workers that have not exited get SIGKILL.
KILL_GRACE = 5.0
#: After a forced stop, how long before workers that have not exited get SIGKILL.
FORCE_KILL_GRACE = 2.0
#: Seconds between two looks at the workers' resident memory (``max_rss``).
RSS_CHECK_INTERVAL = 1.0
#: Longest wait between two "alive" messages of a worker under the watchdog.
ALIVE_INTERVAL_MAX = 1.0
#: Seconds a new supervisor (upgrade) has to say that its workers serve.
UPGRADE_TIMEOUT = 60.0

#: Causes a worker is started in place of another for (the metrics' labels).
RESTART_CAUSES = ("exit", "reload", "upgrade", "max-requests", "max-rss")
#: Where the shed connections are among the metrics' numbers.
SHED = [s.name for s in SERIES].index("ioreactor_connections_shed")

_FD_DIR = "/proc/self/fd" if os.path.isdir("/proc/self/fd") else "/dev/fd"
_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


class RestartBackoff:
    """When to restart a dead worker.

    After a healthy run (``healthy_uptime`` or more) the first death restarts it at
    once: a killed worker is back in milliseconds. Each further quick death in a row
    waits ``initial`` and doubles up to ``maximum``, so a worker that crashes on start
    does not spin the machine.
    """

    def __init__(
        self,
        initial: float = BACKOFF_INITIAL,
        maximum: float = BACKOFF_MAX,
        healthy_uptime: float = HEALTHY_UPTIME,
    ) -> None:
        self.initial = initial
        self.maximum = maximum
        self.healthy_uptime = healthy_uptime
        self.quick_deaths = 0

    def next_delay(self, uptime: float) -> float:
        if uptime >= self.healthy_uptime:
            self.quick_deaths = 0
        self.quick_deaths += 1
        if self.quick_deaths == 1:
            return 0.0
        return float(min(self.maximum, self.initial * 2 ** (self.quick_deaths - 2)))


@dataclass(eq=False)
class WorkerProcess:
    """One forked worker process of a slot."""

    slot: WorkerSlot
    pid: int
    channel: ParentChannel
    started: float
    ready: bool = False
    #: Why it was started in place of a running one ("reload", "max-requests", ...).
    replaces_for: str | None = None
    #: Retiring: replaced, finishing its connections.
    retiring: str | None = None

    @property
    def index(self) -> int:
        return self.slot.index

    def describe(self) -> str:
        return f"worker {self.slot.index} (pid {self.pid})"


@dataclass(eq=False)
class WorkerSlot:
    """One worker position; its process changes on each restart or replacement."""

    index: int
    backoff: RestartBackoff = field(default_factory=RestartBackoff)
    #: The process that serves for this slot (None while it is restarted).
    process: WorkerProcess | None = None
    #: A process started to take over from ``process``, not ready yet.
    replacement: WorkerProcess | None = None
    died_at: float | None = None
    failed_starts: int = 0
    restart: TimerHandle | None = None

    @property
    def pid(self) -> int:
        return self.process.pid if self.process is not None else 0

    @property
    def ready(self) -> bool:
        return self.process is not None and self.process.ready


class Supervisor:
    """Runs ``config.workers`` worker processes and keeps them running until stopped.

    ``reload_handler()`` (SIGHUP) returns the ``make_handler`` of the reloaded
    application (it imports the application again; raising keeps the running workers).
    ``requests_served()`` is read in each worker for ``max_requests``.
    """

    def __init__(
        self,
        config: ServeConfig,
        make_handler: Callable[[], Handler],
        *,
        on_worker_start: Callable[[WorkerContext], object] | None = None,
        reload_handler: Callable[[], Callable[[], Handler]] | None = None,
        requests_served: Callable[[], int] | None = None,
    ) -> None:
        if config.workers < 1:
            raise ValueError("a supervisor needs at least one worker")
        if config.inherited and config.dispatch == "fdpass" and len(config.listeners) > 1:
            raise ValueError("dispatch 'fdpass' accepts on one inherited listener")
        self.config = config
        self.make_handler = make_handler
        self.on_worker_start = on_worker_start
        self.reload_handler = reload_handler
        self.requests_served = requests_served
        self.slots = [WorkerSlot(i) for i in range(config.workers)]
        #: Every live worker process by pid: serving, replacements, retiring.
        self.processes: dict[int, WorkerProcess] = {}
        #: Worker restarts and replacements by cause ("exit", "max-rss", "reload", ...).
        self.restarts: collections.Counter[str] = collections.Counter()
        self.loop: EventLoop | None = None
        self.dispatcher: FdDispatcher | None = None
        self.address: Address = config.address
        self.listeners: list[socket.socket] = []
        self.notifier = Notifier(unset_environment=True)
        self._upgrade_handshake = UpgradeHandshake.from_environment()
        self._worker_config = config
        self._keep_fds: set[int] = set()
        self._stopping = False
        self._forced = False
        self._failed = False
        self._deadline: TimerHandle | None = None
        self._sockname = ""
        self._announced = False
        self._reloading: set[WorkerSlot] = set()
        self._in_reload = False
        self._successor: tuple[int, int] | None = None
        self._alive_interval: float | None = None
        self._watchdog_silent: set[int] = set()
        self._signals: StopSignals | None = None
        #: Every worker's numbers, and its own (--metrics-listen); None: none kept.
        self.metrics: MetricsBook | None = None
        self._exporter: HttpServer | None = None

    # -- running --------------------------------------------------------------------------

    def run(self) -> int:
        """Serve until stopped; returns the exit status (0 after a clean graceful stop)."""
        raise_nofile_limit()
        self._keep_fds = _open_fds()  # what was open before us stays open in the workers
        loop = self.loop = new_loop(self.config.poller, name="supervisor")
        try:
            try:
                sockname = self._listen(loop)
            except OSError as exc:
                log.error("supervisor: cannot listen on %s: %s", self.address, exc)
                return 1
            self._keep_fds -= {sock.fileno() for sock in self.listeners}
            self._signals = StopSignals(
                loop,
                graceful=self.stop,
                force=self.force_stop,
                graceful_signals=(signal.SIGTERM, signal.SIGINT),
                name="supervisor",
            )
            loop.add_signal_handler(signal.SIGCHLD, self._reap)
            loop.add_signal_handler(signal.SIGHUP, self.reload)
            loop.add_signal_handler(signal.SIGUSR2, self.upgrade)
            self._sockname = format_sockname(self.address.kind, sockname)
            interval = self.notifier.watchdog_interval()
            if interval is not None:
                self._alive_interval = min(ALIVE_INTERVAL_MAX, interval / 2)
                loop.call_every(interval, self._feed_watchdog)
            if self.config.max_rss:
                loop.call_every(RSS_CHECK_INTERVAL, self._check_rss)
            if self.config.metrics_listen is not None:
                self._serve_metrics(loop, self.config.metrics_listen)
            for slot in self.slots:
                self._spawn(slot)
            loop.run()
        finally:
            self._cleanup(loop)
        if self._forced:
            return FORCED_EXIT
        return 1 if self._failed else 0

    def _listen(self, loop: EventLoop) -> Any:
        """The listeners: inherited, or opened here; the fdpass dispatcher on its own."""
        config = self.config
        address = config.address
        if config.inherited:
            self.listeners = list(config.listeners)
            log.info(
                "supervisor: serving %d inherited listener(s) on %s",
                len(self.listeners),
                self.listeners[0].getsockname(),
            )
        elif config.dispatch == "fdpass":
            self.listeners = [
                open_listener(address.family, address.sockaddr, backlog=config.backlog)
            ]
        else:
            if address.port:
                refuse_if_held(address)
            # One SO_REUSEPORT listener per worker, held here: the kernel spreads the
            # connections over them, and a worker that goes leaves its queue to the next.
            first = open_listener(
                address.family, address.sockaddr, backlog=config.backlog, reuse_port=True
            )
            self.listeners = [first]
            port = first.getsockname()[1]
            self.address = replace(address, port=port)
            for _ in range(config.workers - 1):
                self.listeners.append(
                    open_listener(
                        address.family,
                        self.address.sockaddr,
                        backlog=config.backlog,
                        reuse_port=True,
                    )
                )
            self._worker_config = replace(config, address=self.address)
        if config.dispatch == "fdpass":
            if not address.is_unix:  # port 0 became a real one: the workers say which
                self.address = replace(address, port=self.listeners[0].getsockname()[1])
                self._worker_config = replace(config, address=self.address)
            accept_batch = config.server_options.get("accept_batch", ACCEPT_BATCH)
            self.dispatcher = FdDispatcher(
                loop, self.listeners[0], balance=config.balance, accept_batch=accept_batch
            )
        return self.listeners[0].getsockname()

    def _listener_of(self, slot: WorkerSlot) -> socket.socket | None:
        if self.config.dispatch == "fdpass":
            return None
        return self.listeners[slot.index % len(self.listeners)]

    # -- workers: start, exit, restart ------------------------------------------------------

    def _spawn(self, slot: WorkerSlot, replaces_for: str | None = None) -> WorkerProcess | None:
        loop = self.loop
        assert loop is not None
        slot.restart = None
        parent_end, worker_end = channel_pair()
        listener = self._listener_of(slot)
        metrics_slot = self.metrics.new_slot() if self.metrics is not None else None
        sys.stdout.flush()  # or the child would write what is buffered a second time
        sys.stderr.flush()
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, CONTROL_SIGNALS)
        try:
            pid = os.fork()
        except OSError as exc:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            parent_end.close()
            worker_end.close()
            if metrics_slot is not None:
                metrics_slot.close()
            log.error("worker %d: fork failed: %s", slot.index, exc)
            if replaces_for is None:
                self._schedule_restart(slot, 0.0)
            return None
        if pid == 0:
            self._run_child(slot.index, worker_end, listener, metrics_slot)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        if self.metrics is not None and metrics_slot is not None:
            self.metrics.attach(pid, metrics_slot)
        channel = ParentChannel(loop, slot.index, parent_end, worker_end, self.address.family)
        process = WorkerProcess(slot, pid, channel, loop.time(), replaces_for=replaces_for)
        channel.on_ready = lambda _channel: self._worker_ready(process)
        channel.on_recycle = lambda _channel, reason: self.replace(slot, reason)
        self.processes[pid] = process
        if replaces_for is None:
            slot.process = process
        else:
            slot.replacement = process
        log.debug("worker %d: forked pid %d", slot.index, pid)
        return process

    def _run_child(
        self,
        index: int,
        worker_end: socket.socket,
        listener: socket.socket | None,
        metrics_slot: MetricsSlot | None,
    ) -> NoReturn:
        """The forked worker: shed the supervisor's state, serve, and exit."""
        code = 1
        try:
            signal.set_wakeup_fd(-1)  # the supervisor's, about to be closed
            for sig in CONTROL_SIGNALS:  # still blocked: ServerProcess unblocks them
                signal.signal(sig, signal.SIG_DFL)
            keep = self._keep_fds | {worker_end.fileno()}
            if listener is not None:
                keep.add(listener.fileno())
            _close_fds_except(keep)
            gc.freeze()
            code = ServerProcess(
                self._worker_config,
                self.make_handler,
                index=index,
                channel=worker_end,
                listener=listener,
                on_worker_start=self.on_worker_start,
                requests_served=self.requests_served,
                alive_interval=self._alive_interval,
                metrics_slot=metrics_slot,
            ).run()
        except BaseException:
            log.exception("worker %d (pid %d) failed", index, os.getpid())
        finally:
            logging.shutdown()
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)

    def _worker_ready(self, process: WorkerProcess) -> None:
        assert self.loop is not None
        process.ready = True
        slot = process.slot
        if process.retiring:
            return
        if slot.replacement is process:
            self._promote(process)
        else:
            slot.failed_starts = 0
            if slot.died_at is not None:
                log.info(
                    "worker %d restarted: pid %d ready %.1f ms after its predecessor died",
                    slot.index,
                    process.pid,
                    (self.loop.time() - slot.died_at) * 1000,
                )
                slot.died_at = None
            else:
                log.info("%s ready", process.describe())
            if self.dispatcher is not None and not self._stopping:
                self.dispatcher.add_worker(process.channel)
        if not self._announced and all(s.ready for s in self.slots):
            self._announced = True  # now the address really serves
            log.info(
                "supervisor (pid %d) listening on %s: %s",
                os.getpid(),
                self._sockname,
                self.config.describe(),
            )
            if self._upgrade_handshake is not None:
                # The predecessor tells systemd (MAINPID=) and retires.
                self._upgrade_handshake.ready()
                self._upgrade_handshake = None
            else:
                self.notifier.ready(self._status())

    def _status(self) -> str:
        return f"serving {self._sockname}: {self.config.describe()}"

    def _reap(self) -> None:
        for pid, process in list(self.processes.items()):
            try:
                done, status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:  # reaped by someone else: its status is lost
                done, status = pid, 0xFF00
            if done:
                del self.processes[pid]
                self._worker_exited(process, os.waitstatus_to_exitcode(status))
        if self._successor is not None:
            pid, _ = self._successor
            try:
                done, status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done, status = pid, 0xFF00
            if done:
                log.error(
                    "upgrade: the new supervisor (pid %d) %s before it served; this one goes on",
                    pid,
                    describe_exit(os.waitstatus_to_exitcode(status)),
                )
                self._upgrade_failed()

    def _worker_exited(self, process: WorkerProcess, code: int) -> None:
        assert self.loop is not None
        slot = process.slot
        uptime = self.loop.time() - process.started
        if self.metrics is not None:
            self.metrics.retire(process.pid)
        if self.dispatcher is not None:
            self.dispatcher.remove_worker(process.channel)
        undelivered = process.channel.close()
        if self.dispatcher is not None:
            self.dispatcher.redispatch(undelivered)
        else:
            for fd in undelivered:
                os.close(fd)
        cause = describe_exit(code)
        was_replacement = slot.replacement is process
        if was_replacement:
            slot.replacement = None
            self._reloading.discard(slot)
        elif slot.process is process:
            slot.process = None
        if process.retiring is not None or self._stopping:
            report = log.info if code == 0 else log.warning
            what = f" (retired: {process.retiring})" if process.retiring else ""
            report("%s%s %s", process.describe(), what, cause)
            if code != 0 and self._stopping:
                self._failed = True
            if self._stopping and not self.processes:
                self._finish()
            return
        if was_replacement:
            log.warning(
                "%s, started to replace the running one (%s), %s before it was ready; "
                "the running one goes on",
                process.describe(),
                process.replaces_for,
                cause,
            )
            self._reload_step_done()
            return
        self.restarts["exit"] += 1
        if not process.ready:
            slot.failed_starts += 1
            if slot.failed_starts >= MAX_FAILED_STARTS:
                log.error(
                    "%s %s before it was ready, %d times in a row; giving up",
                    process.describe(),
                    cause,
                    slot.failed_starts,
                )
                self._failed = True
                self.stop()
                return
        delay = self._schedule_restart(slot, uptime)
        log.warning(
            "%s %s after %.2f s; restarting %s",
            process.describe(),
            cause,
            uptime,
            "now" if not delay else f"in {delay:.1f} s",
        )
        self.notifier.status(f"worker {slot.index} {cause}; restarting")

    def _schedule_restart(self, slot: WorkerSlot, uptime: float) -> float:
        assert self.loop is not None
        delay = slot.backoff.next_delay(uptime)
        slot.died_at = self.loop.time()
        slot.restart = self.loop.call_later(delay, self._spawn, slot)
        return delay

    # -- replacing a worker: reload, recycling ------------------------------------------

    def replace(self, slot: WorkerSlot, cause: str, detail: str = "") -> None:
        """Start a new worker for ``slot``; once it accepts, the running one retires
        (stops accepting, finishes its connections, exits). Logged with ``cause``
        (a word, also the metrics' label) and ``detail``."""
        if self._stopping or slot.replacement is not None or slot.process is None:
            return
        why = f"{cause}: {detail}" if detail else cause
        log.info("%s: starting its replacement (%s)", slot.process.describe(), why)
        self._spawn(slot, replaces_for=cause)

    def _promote(self, process: WorkerProcess) -> None:
        slot = process.slot
        old = slot.process
        slot.replacement = None
        slot.process = process
        reason = process.replaces_for or "replaced"
        self.restarts[reason] += 1
        log.info(
            "%s ready, replacing %s (%s)",
            process.describe(),
            f"pid {old.pid}" if old is not None else "nothing",
            reason,
        )
        if self.dispatcher is not None:
            self.dispatcher.add_worker(process.channel)  # takes the index over
        if old is not None:
            self._retire(old, reason)
        self._reloading.discard(slot)
        self._reload_step_done()

    def _retire(self, process: WorkerProcess, reason: str) -> None:
        process.retiring = reason
        if self.dispatcher is not None:
            self.dispatcher.remove_worker(process.channel)
        process.channel.retire()

    def reload(self) -> None:
        """SIGHUP: import the application again and replace every worker with one that
        runs it; old workers retire once their replacements accept."""
        if self._stopping or self._successor is not None:
            log.warning("supervisor: SIGHUP ignored while stopping or upgrading")
            return
        if self._reloading:
            log.warning("supervisor: SIGHUP ignored, a reload is in progress")
            return
        self.notifier.reloading(f"reloading {len(self.slots)} worker(s)")
        self._in_reload = True
        if self.reload_handler is not None:
            try:
                self.make_handler = self.reload_handler()
            except Exception as exc:
                log.error("supervisor: reload failed, the running workers go on: %s", exc)
                self._in_reload = False
                self.notifier.ready(f"reload failed: {exc}"[:200].replace("\n", " "))
                return
        log.info("supervisor: SIGHUP, reloading %d worker(s)", len(self.slots))
        for slot in self.slots:
            if slot.process is not None and slot.replacement is None:
                self._reloading.add(slot)
                self.replace(slot, "reload")
        self._reload_step_done()

    def _reload_step_done(self) -> None:
        """A replacement of the reload is ready (or failed): READY=1 after the last."""
        if self._in_reload and not self._reloading:
            self._in_reload = False
            log.info("supervisor: reload done")
            self.notifier.ready(self._status())

    # -- upgrade: a new supervisor ----------------------------------------------------------

    def upgrade(self) -> None:
        """SIGUSR2: start a new supervisor from the program on disk with the listeners
        inherited; once it serves, this one's workers retire and it exits."""
        loop = self.loop
        if loop is None or self._stopping or self._successor is not None:
            log.warning("supervisor: SIGUSR2 ignored while stopping or upgrading")
            return
        env: dict[str, str] = {}
        if self.notifier.address is not None:
            env["NOTIFY_SOCKET"] = self.notifier.address
        timeout = self.notifier.watchdog_timeout()
        if timeout is not None:
            env["WATCHDOG_USEC"] = str(int(timeout * 1e6))
        names = ["ioreactor"] * len(self.listeners)
        sys.stdout.flush()
        sys.stderr.flush()
        try:
            pid, read_end = spawn_successor(self.listeners, names, env)
        except OSError as exc:
            log.error("upgrade: cannot start a new supervisor: %s", exc)
            return
        self._successor = (pid, read_end)
        log.info("supervisor: SIGUSR2, upgrading: new supervisor pid %d", pid)
        self.notifier.status(f"upgrading: new supervisor pid {pid}")
        os.set_blocking(read_end, False)
        loop.watch(read_end, READ, self._successor_says)
        loop.call_later(UPGRADE_TIMEOUT, self._upgrade_timed_out, pid)

    def _successor_says(self, events: int) -> None:
        assert self._successor is not None and self.loop is not None
        pid, read_end = self._successor
        try:
            said = os.read(read_end, 16)
        except BlockingIOError:
            return
        except OSError:
            said = b""
        if said.startswith(READY):
            self.loop.unwatch(read_end)
            os.close(read_end)
            log.info("upgrade: the new supervisor (pid %d) serves; retiring this one", pid)
            self.notifier.notify(f"MAINPID={pid}", f"STATUS=upgraded to pid {pid}")
            self._successor = None
            self._retire_all("upgrade")
        elif not said:
            log.error("upgrade: the new supervisor (pid %d) gave up; this one goes on", pid)
            self._upgrade_failed()

    def _upgrade_timed_out(self, pid: int) -> None:
        if self._successor is not None and self._successor[0] == pid:
            log.error("upgrade: no word from the new supervisor (pid %d); stopping it", pid)
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            self._upgrade_failed()

    def _upgrade_failed(self) -> None:
        if self._successor is None or self.loop is None:
            return
        _, read_end = self._successor
        self._successor = None
        self.loop.unwatch(read_end)
        os.close(read_end)
        self.notifier.status(self._status())

    def _retire_all(self, reason: str) -> None:
        """Every worker retires (its successor serves the listeners); then exit."""
        assert self.loop is not None
        self._stopping = True
        if self.dispatcher is not None:
            self.dispatcher.stop_accepting()
        for slot in self.slots:
            if slot.restart is not None:
                slot.restart.cancel()
                slot.restart = None
        for process in self.processes.values():
            self._retire(process, reason)
        self._close_listeners()
        if not self.processes:
            self._finish()
            return
        self._deadline = self.loop.call_later(
            self.config.drain_delay + self.config.shutdown_timeout + KILL_GRACE,
            self._kill_workers,
        )

    # -- watching the workers -------------------------------------------------------------

    def _serve_metrics(self, loop: EventLoop, address: Address) -> None:
        check_available()
        self.metrics = MetricsBook()
        self._exporter = serve_metrics(loop, address, self._exposition)
        where = format_sockname("tcp", self._exporter.sockname).removeprefix("tcp://")
        log.info("supervisor: metrics on http://%s/metrics", where)

    def _exposition(self) -> bytes:
        assert self.metrics is not None
        totals = self.metrics.totals()
        if self.dispatcher is not None:  # fdpass: the supervisor accepts (and sheds)
            totals[SHED] += self.dispatcher.shed
        extra = [
            (Series("ioreactor_worker_restarts", (("cause", cause),), "counter"), float(n))
            for cause, n in sorted((dict.fromkeys(RESTART_CAUSES, 0) | self.restarts).items())
        ]
        serving = sum(1 for s in self.slots if s.ready)
        extra.append((Series("ioreactor_workers", (), "gauge"), float(serving)))
        return exposition(totals, extra)

    def _feed_watchdog(self) -> None:
        """WATCHDOG=1 while every serving worker has said it is alive lately."""
        assert self.loop is not None and self._alive_interval is not None
        now = self.loop.time()
        limit = 3 * self._alive_interval
        silent = {
            p.pid: now - p.channel.last_heard
            for p in self.processes.values()
            if p.ready and not p.retiring and now - p.channel.last_heard > limit
        }
        for pid, quiet in silent.items():
            if pid not in self._watchdog_silent:
                log.warning("worker pid %d silent for %.1f s: not pinging the watchdog", pid, quiet)
        self._watchdog_silent = set(silent)
        if not silent:
            self.notifier.watchdog()

    def _check_rss(self) -> None:
        limit = self.config.max_rss * 1024 * 1024
        for slot in self.slots:
            process = slot.process
            if process is None or not process.ready or slot.replacement is not None:
                continue
            rss = _rss(process.pid)
            if rss > limit:
                detail = f"{rss / 1048576:.1f} MiB resident > {self.config.max_rss} MiB"
                self.replace(slot, "max-rss", detail)

    # -- stopping -----------------------------------------------------------------------

    def stop(self) -> None:
        """Graceful: every worker drains and leaves (SIGTERM), then exit."""
        if self._stopping or self.loop is None:
            return
        self._stopping = True
        self.notifier.stopping(f"stopping {len(self.processes)} worker(s)")
        if self._upgrade_handshake is not None:
            self._upgrade_handshake.close()
            self._upgrade_handshake = None
        for slot in self.slots:
            if slot.restart is not None:
                slot.restart.cancel()
                slot.restart = None
        alive = self._signal_workers(signal.SIGTERM)
        delay = self.config.drain_delay
        # The workers accept on their own copies during their drain delay, then take
        # what is queued and close: the last copy closed closes a listener, and this
        # process's must not outlive theirs (its queue would be reset at our exit).
        # Only the fdpass dispatcher accepts here: it stops when the workers do.
        if self.dispatcher is None:
            self._close_listeners()
        elif delay > 0:
            self.loop.call_later(delay, self._stop_accepting)
        else:
            self._stop_accepting()
        log.info(
            "supervisor: stopping %d worker(s) (drain %.1f s, graceful timeout %.1f s)",
            alive,
            delay,
            self.config.shutdown_timeout,
        )
        if not alive:
            self._finish()
            return
        self._deadline = self.loop.call_later(
            delay + self.config.shutdown_timeout + KILL_GRACE, self._kill_workers
        )

    def _stop_accepting(self) -> None:
        if self.dispatcher is not None:
            self.dispatcher.stop_accepting()
        self._close_listeners()

    def _close_listeners(self) -> None:
        for sock in self.listeners:
            sock.close()

    def force_stop(self) -> None:
        """Second SIGINT: every worker closes everything now (SIGQUIT)."""
        if self.loop is None:
            return
        self._forced = True
        self.stop()
        self._signal_workers(signal.SIGQUIT)
        if self._deadline is not None:
            self._deadline.cancel()
        if self.processes:
            self._deadline = self.loop.call_later(FORCE_KILL_GRACE, self._kill_workers)

    def _signal_workers(self, sig: int) -> int:
        alive = 0
        for pid in self.processes:
            alive += 1
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        return alive

    def _kill_workers(self) -> None:
        for process in self.processes.values():
            log.warning("%s did not stop in time: SIGKILL", process.describe())
        self._signal_workers(signal.SIGKILL)

    def _finish(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        if self.loop is not None:
            self.loop.stop()

    def _cleanup(self, loop: EventLoop) -> None:
        """Whatever happened: no worker outlives the supervisor, no fd stays open."""
        for pid, process in list(self.processes.items()):
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
            for fd in process.channel.close():
                os.close(fd)
        self.processes.clear()
        if self._exporter is not None:
            self._exporter.close()
        if self.metrics is not None:
            self.metrics.close()
        if self.dispatcher is not None:
            self.dispatcher.stop_accepting()
        self._close_listeners()
        if self._upgrade_handshake is not None:
            self._upgrade_handshake.close()
        if self._signals is not None:
            self._signals.close()
        for sig in (signal.SIGCHLD, signal.SIGHUP, signal.SIGUSR2):
            loop.remove_signal_handler(sig)
        self.notifier.close()
        loop.close()


def _rss(pid: int) -> int:
    """Resident bytes of process ``pid`` (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/statm") as statm:
            return int(statm.read().split()[1]) * _PAGE_SIZE
    except (OSError, ValueError, IndexError):
        return 0


def refuse_if_held(address: Address) -> None:
    """Raise EADDRINUSE if any other socket holds ``address`` (reuseport dispatch).

    SO_REUSEPORT lets every socket of the same user join a port's group, so a second
    server started on a port this one serves would silently share it. Only this
    server's workers may: before the supervisor reserves the port with SO_REUSEPORT, it
    binds it without, which the kernel refuses while any socket listens there,
    SO_REUSEPORT or not. SO_REUSEADDR keeps an earlier run's TIME_WAIT connections from
    counting. A probe, not a lock: another supervisor between its own probe and its
    workers' listen (a fraction of a second) would still pass it.
    """
    with socket.socket(address.family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address.sockaddr)
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
            raise OSError(
                errno.EADDRINUSE,
                f"{exc.strerror}: another server holds the port "
                "(SO_REUSEPORT is shared by this server's own workers only)",
            ) from None


def _open_fds() -> set[int]:
    return {int(name) for name in os.listdir(_FD_DIR)}


def _close_fds_except(keep: set[int]) -> None:
    for fd in _open_fds() - keep:
        try:
            os.close(fd)
        except OSError:
            pass  # the fd of the directory listing itself
