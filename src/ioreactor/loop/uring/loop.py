"""``UringEventLoop``: the completion-mode loop, and :func:`create_loop` to build it.

It *is* the base :class:`~ioreactor.loop.event_loop.EventLoop` -- same ``run_once``,
timers, ready queue, cross-thread wakeup and end-of-iteration flush -- over a
:class:`~ioreactor.loop.uring.completion.CompletionPoller`, whose one ``io_uring_enter``
per iteration submits every prepared operation and returns every completion. The loop
watches the poller's own fd with the completion dispatcher as its callback, so
completions are handled in the iteration's event phase like ready fds are.

What differs is only which channel classes the net layer builds for it
(``connection_class`` / ``acceptor_class``): :class:`UringConnection` and
:class:`UringAcceptor`, whose I/O the kernel performs. Readiness-based users of the loop
(connectors, ``watch()``, sendfile's duplicate fd, the waker) keep working through the
poller's level-triggered one-shot polls.

Threads: the ring binds to the thread that first enters it (``SINGLE_ISSUER``). Close
the loop from the thread that ran it (as ``EventLoopThread`` does): only there can the
in-flight receives be cancelled before their buffer memory is unmapped. Closed from
elsewhere, that memory is deliberately left mapped (see ``docs/uring.md``).
"""

from __future__ import annotations

from ioreactor.loop.event_loop import SLOW_ITERATION, EventLoop
from ioreactor.loop.poller import READ
from ioreactor.loop.uring.acceptor import UringAcceptor
from ioreactor.loop.uring.completion import (
    DEFAULT_BUFFER_SIZE,
    DEFAULT_BUFFERS,
    CompletionPoller,
)
from ioreactor.loop.uring.connection import UringConnection
from ioreactor.loop.uring.poller import DEFAULT_ENTRIES

#: The name a completion-mode loop answers to (its ``poller.name``, the CLI's choice).
LOOP_NAME = "uring"


class UringEventLoop(EventLoop):
    """An :class:`EventLoop` whose sockets' I/O is performed by the kernel (io_uring).

    Raises :class:`~ioreactor.loop.uring.ring.UringUnavailable` where io_uring is
    missing or forbidden (or lacks provided-buffer rings, Linux 5.19+).
    """

    connection_class = UringConnection
    acceptor_class = UringAcceptor

    def __init__(
        self,
        *,
        name: str = "loop",
        slow_iteration: float = SLOW_ITERATION,
        entries: int = DEFAULT_ENTRIES,
        buffers: int = DEFAULT_BUFFERS,
        buffer_size: int = DEFAULT_BUFFER_SIZE,
    ) -> None:
        port = CompletionPoller(entries, buffers, buffer_size)
        try:
            super().__init__(port, name=name, slow_iteration=slow_iteration)
        except BaseException:
            port.close()
            raise
        #: The ring, its operation table and its provided buffers.
        self.port = port
        self.watch(port.fileno(), READ, port.dispatch)


def create_loop(
    *,
    name: str = "loop",
    slow_iteration: float = SLOW_ITERATION,
    entries: int = DEFAULT_ENTRIES,
    buffers: int = DEFAULT_BUFFERS,
    buffer_size: int = DEFAULT_BUFFER_SIZE,
) -> UringEventLoop:
    """A completion-mode loop; raises ``UringUnavailable`` (with the reason) if it cannot."""
    return UringEventLoop(
        name=name,
        slow_iteration=slow_iteration,
        entries=entries,
        buffers=buffers,
        buffer_size=buffer_size,
    )
