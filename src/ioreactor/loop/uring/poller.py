"""``UringPoller``: the readiness interface of :mod:`ioreactor.loop.poller` over io_uring.

Every server above the poller line runs unchanged: the loop registers fds and gets
(fd, events) pairs in epoll bit values. Underneath, each registered fd has one
``IORING_OP_POLL_ADD`` in the kernel, and one ``io_uring_enter`` per :meth:`poll` both
submits every pending interest change and collects every completion. Cross-thread wakeup
needs nothing special: the loop's eventfd is one more polled fd.

Level- versus edge-triggered -- measured on Linux 6.18, see ``tests/loop/uring``:

* A *multishot* poll posts a completion each time the file's wait queue is woken, i.e.
  when new data arrives. A reader that leaves bytes unread and sees no new data is never
  told again: edge-triggered. (``IORING_POLL_ADD_LEVEL`` with multishot is EINVAL.)
* A *one-shot* poll armed on an fd that is already ready completes inline, inside the
  ``io_uring_enter`` that submits it.

The default mode (``uring``) therefore arms a one-shot poll per fd and re-arms it in the
next :meth:`poll` after every completion. The re-arm rides in the same ``io_uring_enter``
that waits, and if the loop did not drain the fd the new poll completes at once: exactly
epoll's level-triggered contract, for one extra SQE per event and no extra syscall.
``uring-poll-et`` keeps one multishot poll per fd (re-armed only when the kernel ends it) and
sets ``edge_triggered`` so connections drain until EAGAIN, as on ``epoll-et``.

Every poll's ``user_data`` is ``serial << 32 | fd`` with a fresh serial per arm. A
completion whose user_data is not the fd's current arm -- a poll removed by
``modify``/``unregister``, a cancelled one, a POLL_REMOVE's own completion -- is dropped,
so a reused fd number never receives its predecessor's events. Dropping is safe: the new
arm re-checks readiness when it is submitted.

Close rule: a poll in the kernel holds a reference to the file. After ``unregister`` the
POLL_REMOVE goes out with the next :meth:`poll` (the end of the current loop iteration);
until then a closed socket's FIN is held back. Every registered fd is polled even with
an empty interest set, because, as with epoll, errors and hangups are always reported.
"""

from __future__ import annotations

import errno
import os

from ioreactor.loop.poller import ERROR, Poller
from ioreactor.loop.uring.ring import CQE_F_MORE, Ring

#: Interest bits handed to the kernel: POLLIN..POLLRDHUP. EPOLLET/ONESHOT/EXCLUSIVE (the
#: top bits) mean nothing to POLL_ADD; the mode decides that.
_POLL_BITS = 0xFFFF
_FD_MASK = 0xFFFFFFFF
#: user_data of POLL_REMOVE requests: serial 0 is never an arm, so it is always dropped.
_REMOVE_USER_DATA = 0
#: SQ slots; more interest changes than this in one iteration cost one extra enter.
DEFAULT_ENTRIES = 4096
#: Arm serials wrap below this, so a poll's user_data stays under 2**62: the completion
#: backend tags its operations with bit 63 and both share one ring.
SERIAL_WRAP = 1 << 30


class UringPoller(Poller):
    """Readiness through ``IORING_OP_POLL_ADD``: one-shot re-armed (level) or multishot
    (edge). Raises :class:`~ioreactor.loop.uring.ring.UringUnavailable` when io_uring is
    missing or forbidden."""

    name = "uring-poll"

    def __init__(self, edge_triggered: bool = False, entries: int = DEFAULT_ENTRIES) -> None:
        self._ring = Ring(entries)
        self.edge_triggered = edge_triggered
        if edge_triggered:
            self.name = "uring-poll-et"
        self._events: dict[int, int] = {}  # fd -> interest the loop asked for
        self._armed: dict[int, int] = {}  # fd -> user_data of the poll the kernel holds
        self._armed_events: dict[int, int] = {}  # fd -> interest of its latest poll
        self._dirty: set[int] = set()  # fds whose kernel poll must change before waiting
        self._serial = 0
        self._cqes: list[tuple[int, int, int]] = []

    def register(self, fd: int, events: int) -> None:
        if fd < 0:
            raise ValueError(f"invalid fd {fd}")
        if fd in self._events:
            raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), fd)
        self._events[fd] = events & _POLL_BITS
        self._dirty.add(fd)

    def modify(self, fd: int, events: int) -> None:
        if fd not in self._events:
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), fd)
        self._events[fd] = events & _POLL_BITS
        self._dirty.add(fd)

    def unregister(self, fd: int) -> None:
        if self._events.pop(fd, None) is None:
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), fd)
        self._dirty.discard(fd)
        self._armed_events.pop(fd, None)
        armed = self._armed.pop(fd, None)
        if armed is not None:
            # Always remove, even if the fd is registered again before the next poll():
            # the number may by then name another file, and the armed poll holds the old.
            self._ring.prep_poll_remove(armed, _REMOVE_USER_DATA)

    def _sync(self) -> None:
        """Turn the pending interest changes into SQEs (submitted by the coming enter)."""
        ring = self._ring
        events, armed, armed_events = self._events, self._armed, self._armed_events
        arms: list[tuple[int, int, int]] = []
        serial = self._serial
        for fd in self._dirty:
            want = events[fd]
            current = armed.get(fd)
            if current is not None:
                if want == armed_events[fd]:
                    continue  # the poll in the kernel already asks for this
                ring.prep_poll_remove(current, _REMOVE_USER_DATA)
            serial += 1
            if serial == SERIAL_WRAP:
                serial = 1
            user_data = serial << 32 | fd
            arms.append((fd, want, user_data))
            armed[fd] = user_data
            armed_events[fd] = want
        self._serial = serial
        ring.prep_poll_adds(arms, self.edge_triggered)
        self._dirty.clear()

    def poll(self, timeout: float | None) -> list[tuple[int, int]]:
        if self._dirty:
            self._sync()
        ring = self._ring
        ring.submit_and_wait(timeout)
        cqes = self._cqes
        if not ring.reap(cqes):
            return []
        ready = self._collect_edge(cqes) if self.edge_triggered else self._collect_level(cqes)
        cqes.clear()
        return ready

    def _collect_level(self, cqes: list[tuple[int, int, int]]) -> list[tuple[int, int]]:
        """One-shot polls: at most one current completion per fd, each re-armed next time."""
        armed, dirty = self._armed, self._dirty
        ready: list[tuple[int, int]] = []
        for user_data, res, _ in cqes:
            fd = user_data & _FD_MASK
            if armed.get(fd) != user_data:
                continue  # stale: removed, replaced, or a POLL_REMOVE's own completion
            del armed[fd]
            if res >= 0:
                dirty.add(fd)  # re-armed inside the next poll()'s enter
                ready.append((fd, res))
            else:
                # Unpollable (e.g. closed before unregister: -EBADF): report ERROR once
                # and leave it unarmed rather than fail again every iteration.
                ready.append((fd, ERROR))
        return ready

    def _collect_edge(self, cqes: list[tuple[int, int, int]]) -> list[tuple[int, int]]:
        """Multishot polls: several completions per fd may arrive in one batch; merge."""
        armed, dirty = self._armed, self._dirty
        ready: dict[int, int] = {}
        for user_data, res, flags in cqes:
            fd = user_data & _FD_MASK
            if armed.get(fd) != user_data:
                continue
            if res < 0:
                del armed[fd]
                ready[fd] = ready.get(fd, 0) | ERROR  # unpollable: as in _collect_level
                continue
            if not flags & CQE_F_MORE:
                del armed[fd]  # the kernel ended the multishot (e.g. CQ overflow): re-arm
                dirty.add(fd)
            ready[fd] = ready.get(fd, 0) | res
        return list(ready.items())

    def close(self) -> None:
        self._ring.close()

    def fileno(self) -> int:
        return self._ring.fd
