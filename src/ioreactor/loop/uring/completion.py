"""``CompletionPoller``: the one ring of a completion-mode loop, readiness and completions.

A completion-mode loop (``EventLoop("uring")``, or :func:`~ioreactor.loop.uring.create_loop`)
still has a few fds that only need readiness -- its eventfd waker, a socket while it connects, a
duplicate fd a ``sendfile`` waits on -- and many sockets whose I/O the kernel performs
(multishot accept, multishot recv into provided buffers, send, shutdown, close). Both
kinds share one ring, so one ``io_uring_enter`` per loop iteration submits every prepared
operation and poll re-arm, waits, and returns every completion.

The loop stays the base :class:`~ioreactor.loop.event_loop.EventLoop`: this poller
reports readiness completions as ``(fd, events)`` like any poller, and (being
``completion_mode``) reports the batch of operation completions as one event of its
*own* fd, which the loop watches with :meth:`dispatch` as the callback. So completions
are handled where ready fds are (``loop.now`` fresh, counted as busy time, errors logged
per callback), then timers, the ready queue and the end-of-iteration flush run exactly
as on epoll.

``user_data`` of an operation is ``OP_TAG | channel id | kind``: bit 63 tells it from a
poll arm (whose user_data stays below ``2**62``), the channel is the object that owns the
operation (a connection, an acceptor; ``id()`` is 16-byte aligned, so the low three bits
are free for the kind) and ``kind`` says which operation. A channel registers
``ops[user_data] = self`` when it submits and removes the entry on the operation's final
completion (the one without ``CQE_F_MORE``): the table is what keeps a closed connection
-- and the memory its in-flight send reads -- alive until the kernel is done with it, and
an ``id()`` cannot be reused while its object is in the table. Dispatch is a table of
functions indexed by kind (yolanda's dispatcher table): no bound method is allocated
per operation, so an idle connection's armed receive costs one dict entry.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable
from typing import Any

from ioreactor.loop.poller import READ
from ioreactor.loop.uring.poller import DEFAULT_ENTRIES, UringPoller
from ioreactor.loop.uring.ring import BufferRing

log = logging.getLogger("ioreactor.uring")

#: Bit 63 of an operation's user_data (poll arms stay below 2**62).
OP_TAG = 1 << 63
#: Low bits of an operation's user_data that name its kind.
KIND_MASK = 0b111
RECV = 0
SEND = 1
SHUTDOWN = 2
ACCEPT = 3
#: A plain callback ``ops[user_data](res, flags)`` with a key from :meth:`call_key`.
CALL = 7
#: user_data of requests whose own completion nobody waits for (cancels, closes).
UNWATCHED = OP_TAG | 0b110

#: Provided receive buffers per loop (a power of two): how many receives can complete in
#: one iteration before the ring runs dry (a dry ring costs a re-arm, never data).
DEFAULT_BUFFERS = 1024
#: Bytes per provided buffer: the most one receive completion delivers.
DEFAULT_BUFFER_SIZE = 16 * 1024
#: The buffer group id of the loop's receive buffers.
BUFFER_GROUP = 0

#: What handles a completion of each kind: ``handler(channel, res, flags)``; ``res`` < 0
#: is ``-errno``. The net layer's channel modules (:mod:`ioreactor.net.uring`) fill
#: their kinds in (:func:`register_kind`) when they are imported.
HANDLERS: list[Callable[[Any, int, int], None] | None] = [None] * (KIND_MASK + 1)
Cqe = tuple[int, int, int]


def _call(callback: Callable[[int, int], None], res: int, flags: int) -> None:
    callback(res, flags)


HANDLERS[CALL] = _call


def register_kind(kind: int, handler: Callable[[Any, int, int], None]) -> None:
    """Route completions of ``kind`` to ``handler(channel, res, flags)``."""
    if HANDLERS[kind] not in (None, handler):
        raise ValueError(f"completion kind {kind} is already handled by {HANDLERS[kind]!r}")
    HANDLERS[kind] = handler


def channel_key(channel: object) -> int:
    """The user_data base of ``channel``'s operations: ``OP_TAG | id(channel)``."""
    key = id(channel)
    if key & KIND_MASK:  # pragma: no cover - CPython aligns objects to 16 bytes
        raise RuntimeError(f"object address {key:#x} leaves no room for the kind bits")
    return OP_TAG | key


class CompletionPoller(UringPoller):
    """A level-triggered :class:`UringPoller` plus the operation table and buffer ring of
    a completion-mode loop. Raises ``UringUnavailable`` where io_uring is missing."""

    name = "uring"
    completion_mode = True

    def __init__(
        self,
        entries: int = DEFAULT_ENTRIES,
        buffers: int = DEFAULT_BUFFERS,
        buffer_size: int = DEFAULT_BUFFER_SIZE,
    ) -> None:
        super().__init__(entries=entries)
        try:
            self.buffers: BufferRing = self._ring.register_buffer_ring(
                BUFFER_GROUP, buffers, buffer_size
            )
        except BaseException:
            self._ring.close()
            raise
        self.ring = self._ring
        #: user_data -> the channel (or CALL callback) of every operation the kernel owns.
        self.ops: dict[int, Any] = {}
        #: Memory an operation points to besides its channel's own (a SENDMSG's iovecs),
        #: by user_data, until the operation's completion.
        self.pinned: dict[int, object] = {}
        #: Operation completions of the current iteration, handed to :meth:`dispatch`.
        self.completions: list[Cqe] = []
        #: Receives that found the buffer ring empty (each re-armed; no data is lost).
        self.enobufs = 0
        self._keys = itertools.count(1)

    def call_key(self) -> int:
        """A fresh user_data for an operation whose completion calls ``ops[key](res,
        flags)`` (kind CALL: tests, one-off requests)."""
        return OP_TAG | next(self._keys) << 3 | CALL

    def register(self, fd: int, events: int) -> None:
        if fd != self._ring.fd:  # the loop watching our own fd: the dispatch channel
            super().register(fd, events)

    def unregister(self, fd: int) -> None:
        if fd != self._ring.fd:
            super().unregister(fd)

    def poll(self, timeout: float | None) -> list[tuple[int, int]]:
        """The iteration's one ``io_uring_enter``: submit, wait, reap.

        Poll completions become ``(fd, events)``; if any operation completed, the list
        starts with ``(ring fd, READ)`` so the loop calls :meth:`dispatch` first.
        """
        if self._dirty:
            self._sync()
        ring = self._ring
        ring.submit_and_wait(timeout)
        done = self.completions
        if not ring.reap(done):
            return []
        if min(done)[0] >= OP_TAG:  # C-speed scan: the common case, operations only
            return [(ring.fd, READ)]
        polls = [cqe for cqe in done if cqe[0] < OP_TAG]
        ready = self._collect_level(polls)
        if len(polls) == len(done):
            done.clear()
        else:
            ready.insert(0, (ring.fd, READ))
        return ready

    def dispatch(self, events: int) -> None:
        """Run the handler of every operation completion reaped by this iteration's poll.

        A failing handler is logged and the batch goes on: one bad channel never stops
        the others (or the loop).
        """
        done = self.completions
        get = self.ops.get
        handlers = HANDLERS
        for user_data, res, flags in done:
            channel = get(user_data)
            if channel is not None:
                try:
                    handlers[user_data & 7](channel, res, flags)  # type: ignore[misc]
                except Exception:
                    log.exception("completion of %r failed (res %d)", channel, res)
        done.clear()
        self.buffers.publish()  # the buffers recycled by this batch, before the next enter
