"""The supervisor: forks the workers, restarts the ones that die, stops them all.

::

    supervisor (this process, one loop, no threads)
      SIGCHLD          reap, log the exit cause, restart (now, or after a back-off)
      SIGTERM, SIGINT  stop accepting (fdpass), SIGTERM to every worker, wait, exit 0
        or SIGHUP
      second SIGINT    SIGQUIT to every worker (forced stop), exit FORCED_EXIT
      fdpass only      the main reactor too: accepts and passes fds (FdDispatcher)
      |-- worker 0 (fork)  ServerProcess: own loop(s), own server, own fd limit
      |-- worker 1 (fork)  ...

Forking from a process that has an event loop needs care, because the child shares
the parent's epoll instance and eventfd: an ``epoll_ctl`` from the child would change
the parent's interest set. So the child never touches the parent's loop. It resets the
supervisor's signal handlers (signals stay blocked from before the fork until its own
handlers are in place), closes every fd the supervisor opened (a plain ``close`` only
drops the child's reference), freezes the inherited objects so no collector ever
finalizes them, and leaves with ``os._exit`` so no parent frame ever unwinds in it.
"""

from __future__ import annotations

import errno
import gc
import logging
import os
import signal
import socket
import sys
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, NoReturn

from ioreactor.loop.backends import new_loop
from ioreactor.loop.event_loop import EventLoop
from ioreactor.multicore.channel import ParentChannel, channel_pair
from ioreactor.multicore.config import ServeConfig, WorkerContext
from ioreactor.multicore.dispatcher import FdDispatcher
from ioreactor.multicore.signals import (
    CONTROL_SIGNALS,
    FORCED_EXIT,
    StopSignals,
    describe_exit,
)
from ioreactor.multicore.worker import ServerProcess
from ioreactor.net.acceptor import ACCEPT_BATCH, open_listener
from ioreactor.net.address import Address, format_sockname
from ioreactor.net.sockopt import raise_nofile_limit

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

_FD_DIR = "/proc/self/fd" if os.path.isdir("/proc/self/fd") else "/dev/fd"


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


@dataclass
class WorkerSlot:
    """One worker position; its process changes on each restart."""

    index: int
    backoff: RestartBackoff = field(default_factory=RestartBackoff)
    pid: int = 0
    channel: ParentChannel | None = None
    started: float = 0.0
    ready: bool = False
    died_at: float | None = None
    failed_starts: int = 0
    restart: TimerHandle | None = None


class Supervisor:
    """Runs ``config.workers`` worker processes and keeps them running until stopped."""

    def __init__(
        self,
        config: ServeConfig,
        make_handler: Callable[[], Handler],
        *,
        on_worker_start: Callable[[WorkerContext], object] | None = None,
    ) -> None:
        if config.workers < 1:
            raise ValueError("a supervisor needs at least one worker")
        self.config = config
        self.make_handler = make_handler
        self.on_worker_start = on_worker_start
        self.slots = [WorkerSlot(i) for i in range(config.workers)]
        self.loop: EventLoop | None = None
        self.dispatcher: FdDispatcher | None = None
        self.address: Address = config.address
        self._worker_config = config
        self._reserved: socket.socket | None = None
        self._family = config.address.family
        self._keep_fds: set[int] = set()
        self._stopping = False
        self._forced = False
        self._failed = False
        self._deadline: TimerHandle | None = None
        self._sockname = ""
        self._announced = False
        self._signals: StopSignals | None = None

    # -- running --------------------------------------------------------------------------

    def run(self) -> int:
        """Serve until stopped; returns the exit status (0 after a clean graceful stop)."""
        raise_nofile_limit()
        self._keep_fds = _open_fds()  # what was open before us stays open in the workers
        loop = self.loop = new_loop(self.config.poller, name="supervisor")
        try:
            try:
                sockname = self._bind(loop)
            except OSError as exc:
                log.error("supervisor: cannot listen on %s: %s", self.address, exc)
                return 1
            self._signals = StopSignals(
                loop, graceful=self.stop, force=self.force_stop, name="supervisor"
            )
            loop.add_signal_handler(signal.SIGCHLD, self._reap)
            self._sockname = format_sockname(self.address.kind, sockname)
            for slot in self.slots:
                self._spawn(slot)
            loop.run()
        finally:
            self._cleanup(loop)
        if self._forced:
            return FORCED_EXIT
        return 1 if self._failed else 0

    def _bind(self, loop: EventLoop) -> Any:
        """Open the listener (fdpass) or reserve the port for the workers (reuseport)."""
        config = self.config
        address = config.address
        if config.dispatch == "fdpass":
            listener = open_listener(address.family, address.sockaddr, backlog=config.backlog)
            accept_batch = config.server_options.get("accept_batch", ACCEPT_BATCH)
            self.dispatcher = FdDispatcher(
                loop, listener, balance=config.balance, accept_batch=accept_batch
            )
            return listener.getsockname()
        if address.port:
            refuse_if_held(address)
        # Bound, never listening: holds the port (port 0 becomes a real one) without
        # joining the SO_REUSEPORT group, so the kernel never routes a SYN to it.
        reserved = self._reserved = socket.socket(address.family, socket.SOCK_STREAM)
        reserved.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        reserved.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        reserved.bind(address.sockaddr)
        sockname = reserved.getsockname()
        self.address = replace(address, port=sockname[1])
        self._worker_config = replace(config, address=self.address)
        return sockname

    # -- workers: start, exit, restart ------------------------------------------------------

    def _spawn(self, slot: WorkerSlot) -> None:
        loop = self.loop
        assert loop is not None
        slot.restart = None
        parent_end, worker_end = channel_pair()
        sys.stdout.flush()  # or the child would write what is buffered a second time
        sys.stderr.flush()
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, CONTROL_SIGNALS)
        try:
            pid = os.fork()
        except OSError as exc:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            parent_end.close()
            worker_end.close()
            log.error("worker %d: fork failed: %s", slot.index, exc)
            self._schedule_restart(slot, 0.0)
            return
        if pid == 0:
            self._run_child(slot.index, worker_end)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        slot.pid = pid
        slot.started = loop.time()
        slot.ready = False
        channel = ParentChannel(loop, slot.index, parent_end, worker_end, self._family)
        channel.on_ready = lambda _channel: self._worker_ready(slot)
        slot.channel = channel
        log.debug("worker %d: forked pid %d", slot.index, pid)

    def _run_child(self, index: int, worker_end: socket.socket) -> NoReturn:
        """The forked worker: shed the supervisor's state, serve, and exit."""
        code = 1
        try:
            signal.set_wakeup_fd(-1)  # the supervisor's, about to be closed
            for sig in CONTROL_SIGNALS:  # still blocked: ServerProcess unblocks them
                signal.signal(sig, signal.SIG_DFL)
            _close_fds_except(self._keep_fds | {worker_end.fileno()})
            gc.freeze()
            code = ServerProcess(
                self._worker_config,
                self.make_handler,
                index=index,
                channel=worker_end,
                on_worker_start=self.on_worker_start,
            ).run()
        except BaseException:
            log.exception("worker %d (pid %d) failed", index, os.getpid())
        finally:
            logging.shutdown()
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)

    def _worker_ready(self, slot: WorkerSlot) -> None:
        slot.ready = True
        slot.failed_starts = 0
        if slot.died_at is not None and self.loop is not None:
            log.info(
                "worker %d restarted: pid %d ready %.1f ms after its predecessor died",
                slot.index,
                slot.pid,
                (self.loop.time() - slot.died_at) * 1000,
            )
            slot.died_at = None
        else:
            log.info("worker %d (pid %d) ready", slot.index, slot.pid)
        if self.dispatcher is not None and slot.channel is not None and not self._stopping:
            self.dispatcher.add_worker(slot.channel)
        if not self._announced and all(s.ready for s in self.slots):
            self._announced = True  # now the address really serves (reuseport: workers bind)
            log.info(
                "supervisor (pid %d) listening on %s: %s",
                os.getpid(),
                self._sockname,
                self.config.describe(),
            )

    def _reap(self) -> None:
        for slot in self.slots:
            if not slot.pid:
                continue
            try:
                pid, status = os.waitpid(slot.pid, os.WNOHANG)
            except ChildProcessError:  # reaped by someone else: its status is lost
                pid, status = slot.pid, 0xFF00
            if pid:
                self._worker_exited(slot, os.waitstatus_to_exitcode(status))

    def _worker_exited(self, slot: WorkerSlot, code: int) -> None:
        assert self.loop is not None
        pid, slot.pid = slot.pid, 0
        uptime = self.loop.time() - slot.started
        undelivered: list[int] = []
        if self.dispatcher is not None:
            self.dispatcher.remove_worker(slot.index)
        if slot.channel is not None:
            undelivered = slot.channel.close()
            slot.channel = None
        if self.dispatcher is not None:
            self.dispatcher.redispatch(undelivered)
        else:
            for fd in undelivered:
                os.close(fd)
        cause = describe_exit(code)
        if self._stopping:
            report = log.info if code == 0 else log.warning
            report("worker %d (pid %d) %s", slot.index, pid, cause)
            if code != 0:
                self._failed = True
            if not any(s.pid for s in self.slots):
                self._finish()
            return
        if not slot.ready:
            slot.failed_starts += 1
            if slot.failed_starts >= MAX_FAILED_STARTS:
                log.error(
                    "worker %d (pid %d) %s before it was ready, %d times in a row; giving up",
                    slot.index,
                    pid,
                    cause,
                    slot.failed_starts,
                )
                self._failed = True
                self.stop()
                return
        delay = self._schedule_restart(slot, uptime)
        log.warning(
            "worker %d (pid %d) %s after %.2f s; restarting %s",
            slot.index,
            pid,
            cause,
            uptime,
            "now" if not delay else f"in {delay:.1f} s",
        )

    def _schedule_restart(self, slot: WorkerSlot, uptime: float) -> float:
        assert self.loop is not None
        delay = slot.backoff.next_delay(uptime)
        slot.died_at = self.loop.time()
        slot.restart = self.loop.call_later(delay, self._spawn, slot)
        return delay

    # -- stopping -----------------------------------------------------------------------

    def stop(self) -> None:
        """Graceful: stop accepting, ask every worker to finish (SIGTERM), then exit."""
        if self._stopping or self.loop is None:
            return
        self._stopping = True
        if self.dispatcher is not None:
            self.dispatcher.stop_accepting()
        for slot in self.slots:
            if slot.restart is not None:
                slot.restart.cancel()
                slot.restart = None
        alive = self._signal_workers(signal.SIGTERM)
        log.info(
            "supervisor: stopping %d worker(s) (graceful timeout %.1f s)",
            alive,
            self.config.shutdown_timeout,
        )
        if not alive:
            self._finish()
            return
        self._deadline = self.loop.call_later(
            self.config.shutdown_timeout + KILL_GRACE, self._kill_workers
        )

    def force_stop(self) -> None:
        """Second SIGINT: every worker closes everything now (SIGQUIT)."""
        if self.loop is None:
            return
        self._forced = True
        self.stop()
        self._signal_workers(signal.SIGQUIT)
        if self._deadline is not None:
            self._deadline.cancel()
        if any(s.pid for s in self.slots):
            self._deadline = self.loop.call_later(FORCE_KILL_GRACE, self._kill_workers)

    def _signal_workers(self, sig: int) -> int:
        alive = 0
        for slot in self.slots:
            if slot.pid:
                alive += 1
                try:
                    os.kill(slot.pid, sig)
                except ProcessLookupError:
                    pass
        return alive

    def _kill_workers(self) -> None:
        for slot in self.slots:
            if slot.pid:
                log.warning(
                    "worker %d (pid %d) did not stop in time: SIGKILL", slot.index, slot.pid
                )
        self._signal_workers(signal.SIGKILL)

    def _finish(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        if self.loop is not None:
            self.loop.stop()

    def _cleanup(self, loop: EventLoop) -> None:
        """Whatever happened: no worker outlives the supervisor, no fd stays open."""
        for slot in self.slots:
            if slot.pid:
                try:
                    os.kill(slot.pid, signal.SIGKILL)
                    os.waitpid(slot.pid, 0)
                except (ProcessLookupError, ChildProcessError):
                    pass
                slot.pid = 0
            if slot.channel is not None:
                for fd in slot.channel.close():
                    os.close(fd)
                slot.channel = None
        if self.dispatcher is not None:
            self.dispatcher.stop_accepting()
        if self._reserved is not None:
            self._reserved.close()
        if self._signals is not None:
            self._signals.close()
        loop.close()


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
