"""I/O multiplexing backends behind one small interface.

A poller answers one question: which of the registered fds are ready, and for what.
Events use the epoll bit values everywhere (``READ`` = EPOLLIN, ``WRITE`` = EPOLLOUT,
``ERROR`` = EPOLLERR, ``HUP`` = EPOLLHUP); the ``select`` and ``poll`` backends translate,
so the loop and every channel above it see one vocabulary.

Backends, chosen at run time by name (:func:`create_poller`, ``EventLoop(name)``):

=============  ========================================================================
select         portable; O(n) per call; refuses fds >= FD_SETSIZE (1024) -- the
               course's point about select's limit, kept visible rather than hidden.
poll           no fd limit; still O(n) per call (the whole array crosses into the
               kernel).
epoll          O(ready) per call; level-triggered (the default).
epoll-et       edge-triggered epoll: a channel must drain until EAGAIN on every event.
kqueue         BSD/macOS equivalent of epoll (only where the OS has it).
uring          io_uring completion mode (Linux): the kernel performs the sockets' I/O;
               the poller reports completions (``completion_mode``, :meth:`dispatch`).
uring-poll     readiness through io_uring poll requests (``-et``: edge-triggered).
=============  ========================================================================

An fd closed while still registered (an owner that forgot to unregister first) makes
select() fail with EBADF and poll() report POLLNVAL on every call; epoll forgets it on
its own. The select and poll backends drop such an fd, log it, and report it once as
``ERROR | HUP`` so its owner cleans up: the loop neither raises nor spins.
"""

from __future__ import annotations

import errno
import logging
import os
import select
import sys
from abc import ABC, abstractmethod
from collections.abc import Callable

try:
    import cython
except ImportError:  # the pure build runs without Cython installed
    import ioreactor._cython as cython

if not cython.compiled:  # (the compiled build's are C constants as well: poller.pxd)
    READ = 0x001  # EPOLLIN / POLLIN
    WRITE = 0x004  # EPOLLOUT / POLLOUT
    ERROR = 0x008  # EPOLLERR / POLLERR
    HUP = 0x010  # EPOLLHUP / POLLHUP

log = logging.getLogger("ioreactor.loop")

#: FD_SETSIZE of the C library (1024 on Linux and macOS): select() cannot watch fds above it.
FD_SETSIZE = 1024
#: Upper bound on events returned by one epoll_wait; more stay queued in the kernel.
MAX_EVENTS = 1024


class Poller(ABC):
    """Readiness notification for a set of file descriptors."""

    name: str = "abstract"
    #: True when the backend reports a readiness change once (the channel must drain).
    edge_triggered: bool = False
    #: True when the kernel performs the sockets' I/O itself (io_uring completion mode):
    #: the poller reports each batch of operation completions as its own fd being
    #: readable, and the loop hands that event to :meth:`dispatch`.
    completion_mode: bool = False

    @abstractmethod
    def register(self, fd: int, events: int) -> None: ...

    @abstractmethod
    def modify(self, fd: int, events: int) -> None: ...

    @abstractmethod
    def unregister(self, fd: int) -> None: ...

    @abstractmethod
    def poll(self, timeout: float | None) -> list[tuple[int, int]]:
        """Wait up to ``timeout`` seconds (None: forever) and return (fd, events) pairs."""

    def dispatch(self, events: int) -> None:
        """Completion mode only: handle the completions the last :meth:`poll` reaped."""

    def close(self) -> None:
        """Release the kernel object behind the poller, if any."""

    def fileno(self) -> int:
        return -1


class SelectPoller(Poller):
    """``select(2)``: three fd sets rebuilt from two Python sets on every call."""

    name = "select"

    def __init__(self) -> None:
        self._readers: set[int] = set()
        self._writers: set[int] = set()

    def register(self, fd: int, events: int) -> None:
        if fd >= FD_SETSIZE:
            raise ValueError(
                f"fd {fd} is >= FD_SETSIZE ({FD_SETSIZE}): select() cannot watch it; "
                "use --poller poll or epoll"
            )
        self.modify(fd, events)

    def modify(self, fd: int, events: int) -> None:
        if events & READ:
            self._readers.add(fd)
        else:
            self._readers.discard(fd)
        if events & WRITE:
            self._writers.add(fd)
        else:
            self._writers.discard(fd)

    def unregister(self, fd: int) -> None:
        self._readers.discard(fd)
        self._writers.discard(fd)

    def poll(self, timeout: float | None) -> list[tuple[int, int]]:
        if not self._readers and not self._writers:
            # select() with three empty sets is only a sleep; keep the same contract.
            select.select([], [], [], timeout)
            return []
        try:
            r, w, x = select.select(self._readers, self._writers, self._readers, timeout)
        except OSError as exc:
            if exc.errno != errno.EBADF:
                raise
            closed = self._drop_closed()
            if not closed:
                raise
            return self.poll(0.0) + closed  # the others, without the closed ones
        if not w and not x:
            return [(fd, READ) for fd in r]
        ready: dict[int, int] = {}
        for fd in r:
            ready[fd] = READ
        for fd in w:
            ready[fd] = ready.get(fd, 0) | WRITE
        for fd in x:
            ready[fd] = ready.get(fd, 0) | ERROR
        return list(ready.items())

    def _drop_closed(self) -> list[tuple[int, int]]:
        """select() said EBADF: find the registered fds that are closed and drop them."""
        closed = []
        for fd in self._readers | self._writers:
            try:
                os.fstat(fd)
            except OSError:
                closed.append(fd)
                self.unregister(fd)
        return _report_closed(closed)


def _report_closed(fds: list[int]) -> list[tuple[int, int]]:
    for fd in fds:
        log.error(
            "fd %d was closed while the loop still watched it (unwatch before closing); "
            "dropped, and reported to its handler as an error",
            fd,
        )
    return [(fd, ERROR | HUP) for fd in fds]


class PollPoller(Poller):
    """``poll(2)``: one pollfd array; POLLIN/POLLOUT share epoll's bit values on Linux."""

    name = "poll"

    def __init__(self) -> None:
        self._poll = select.poll()

    def register(self, fd: int, events: int) -> None:
        self._poll.register(fd, events)

    def modify(self, fd: int, events: int) -> None:
        self._poll.modify(fd, events)

    def unregister(self, fd: int) -> None:
        self._poll.unregister(fd)

    def poll(self, timeout: float | None) -> list[tuple[int, int]]:
        ms = None if timeout is None else max(0, int(timeout * 1000 + 0.999))
        events = self._poll.poll(ms)
        closed = [fd for fd, mask in events if mask & select.POLLNVAL]
        if not closed:
            return events
        for fd in closed:
            self._poll.unregister(fd)
        dropped = set(closed)
        return [e for e in events if e[0] not in dropped] + _report_closed(closed)


class EpollPoller(Poller):
    """``epoll(7)``, level-triggered unless ``edge_triggered`` is set."""

    name = "epoll"

    def __init__(self, edge_triggered: bool = False) -> None:
        self._epoll = select.epoll()
        self.edge_triggered = edge_triggered
        self._flag = select.EPOLLET if edge_triggered else 0
        if edge_triggered:
            self.name = "epoll-et"

    def register(self, fd: int, events: int) -> None:
        self._epoll.register(fd, events | self._flag)

    def modify(self, fd: int, events: int) -> None:
        self._epoll.modify(fd, events | self._flag)

    def unregister(self, fd: int) -> None:
        self._epoll.unregister(fd)

    def poll(self, timeout: float | None) -> list[tuple[int, int]]:
        return self._epoll.poll(-1 if timeout is None else timeout, MAX_EVENTS)

    def close(self) -> None:
        self._epoll.close()

    def fileno(self) -> int:
        return self._epoll.fileno()


if sys.platform != "linux":  # pragma: no cover - exercised only on BSD/macOS

    class KqueuePoller(Poller):
        """``kqueue(2)``: one filter per direction, translated to epoll bits."""

        name = "kqueue"

        def __init__(self) -> None:
            self._kq = select.kqueue()
            self._events: dict[int, int] = {}

        def _apply(self, fd: int, old: int, new: int) -> None:
            changes = []
            for bit, filt in ((READ, select.KQ_FILTER_READ), (WRITE, select.KQ_FILTER_WRITE)):
                if new & bit and not old & bit:
                    changes.append(select.kevent(fd, filt, select.KQ_EV_ADD))
                elif old & bit and not new & bit:
                    changes.append(select.kevent(fd, filt, select.KQ_EV_DELETE))
            if changes:
                self._kq.control(changes, 0, 0)

        def register(self, fd: int, events: int) -> None:
            self._apply(fd, 0, events)
            self._events[fd] = events

        def modify(self, fd: int, events: int) -> None:
            self._apply(fd, self._events[fd], events)
            self._events[fd] = events

        def unregister(self, fd: int) -> None:
            self._apply(fd, self._events.pop(fd), 0)

        def poll(self, timeout: float | None) -> list[tuple[int, int]]:
            ready: dict[int, int] = {}
            for kev in self._kq.control(None, MAX_EVENTS, timeout):
                bit = READ if kev.filter == select.KQ_FILTER_READ else WRITE
                if kev.flags & select.KQ_EV_EOF:
                    bit |= HUP
                if kev.flags & select.KQ_EV_ERROR:
                    bit |= ERROR
                ready[kev.ident] = ready.get(kev.ident, 0) | bit
            return list(ready.items())

        def close(self) -> None:
            self._kq.close()

        def fileno(self) -> int:
            fd: int = self._kq.fileno()
            return fd


#: The io_uring backends (Linux): ``uring`` is the completion-mode poller (the kernel
#: accepts, receives and sends), ``uring-poll`` / ``uring-poll-et`` are readiness over
#: io_uring. Their names are always known here; the io_uring package (and ctypes) is
#: imported only when one is built, and building one where io_uring is missing or
#: forbidden raises ``UringUnavailable`` with the reason.
URING_POLLERS: tuple[str, ...] = (
    ("uring", "uring-poll", "uring-poll-et") if sys.platform == "linux" else ()
)


def _completion_poller() -> Poller:
    from ioreactor.loop.uring.completion import CompletionPoller

    return CompletionPoller()


def _uring_poller(edge_triggered: bool = False) -> Poller:
    from ioreactor.loop.uring.poller import UringPoller

    return UringPoller(edge_triggered=edge_triggered)


_FACTORIES: dict[str, Callable[[], Poller]] = {"select": SelectPoller, "poll": PollPoller}
if hasattr(select, "epoll"):
    _FACTORIES["epoll"] = EpollPoller
    _FACTORIES["epoll-et"] = lambda: EpollPoller(edge_triggered=True)
if sys.platform != "linux" and hasattr(select, "kqueue"):
    _FACTORIES["kqueue"] = KqueuePoller
if URING_POLLERS:
    _FACTORIES["uring"] = _completion_poller
    _FACTORIES["uring-poll"] = _uring_poller
    _FACTORIES["uring-poll-et"] = lambda: _uring_poller(edge_triggered=True)


def register_backend(name: str, factory: Callable[[], Poller]) -> None:
    """Make an extra backend selectable by name."""
    _FACTORIES[name] = factory


def available_pollers() -> list[str]:
    """Every backend name known on this OS, the default first: what :func:`create_poller`,
    ``EventLoop(name)`` and every ``--poller`` flag accept. The io_uring names come
    after the readiness pollers of the OS (see ``URING_POLLERS``)."""
    order = ["epoll", "kqueue", "poll", "select", "epoll-et", *URING_POLLERS]
    known = [n for n in order if n in _FACTORIES]
    return known + sorted(set(_FACTORIES) - set(known))


def best_poller_name() -> str:
    return available_pollers()[0]


def create_poller(name: str | None = None) -> Poller:
    """Build the backend called ``name``, or the best one this OS has."""
    chosen = name or best_poller_name()
    try:
        factory = _FACTORIES[chosen]
    except KeyError:
        raise ValueError(
            f"unknown poller {chosen!r}; available here: {', '.join(available_pollers())}"
        ) from None
    return factory()
