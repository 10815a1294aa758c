"""The completion-mode loop: :func:`create_loop`, an :class:`EventLoop` over a
:class:`~ioreactor.loop.uring.completion.CompletionPoller`.

It *is* the base :class:`~ioreactor.loop.event_loop.EventLoop` -- same ``run_once``,
timers, ready queue, cross-thread wakeup and end-of-iteration flush -- over a poller
whose one ``io_uring_enter`` per iteration submits every prepared operation and returns
every completion. The poller says ``completion_mode``: the loop watches the poller's own
fd with the completion dispatcher as its callback (completions are handled in the
iteration's event phase like ready fds are), and the net layer builds the channels whose
I/O the kernel performs (``ioreactor.net.channels``). ``EventLoop("uring")`` is the same
loop with the default ring sizes; :func:`create_loop` takes them as options.

Readiness-based users of the loop (connectors, ``watch()``, sendfile's duplicate fd, the
waker) keep working through the poller's level-triggered one-shot polls.

Threads: the ring binds to the thread that first enters it (``SINGLE_ISSUER``). Close
the loop from the thread that ran it (as ``EventLoopThread`` does): only there can the
in-flight receives be cancelled before their buffer memory is unmapped. Closed from
elsewhere, that memory is deliberately left mapped (see ``docs/uring.md``).
"""

from __future__ import annotations

from ioreactor.loop.event_loop import SLOW_ITERATION, EventLoop
from ioreactor.loop.uring.completion import (
    DEFAULT_BUFFER_SIZE,
    DEFAULT_BUFFERS,
    CompletionPoller,
)
from ioreactor.loop.uring.poller import DEFAULT_ENTRIES

#: The name a completion-mode loop answers to (its ``poller.name``, the CLI's choice).
LOOP_NAME = CompletionPoller.name


def create_loop(
    *,
    name: str = "loop",
    slow_iteration: float = SLOW_ITERATION,
    entries: int = DEFAULT_ENTRIES,
    buffers: int = DEFAULT_BUFFERS,
    buffer_size: int = DEFAULT_BUFFER_SIZE,
) -> EventLoop:
    """A completion-mode loop with these ring sizes; raises ``UringUnavailable`` (with
    the reason) where io_uring is missing or forbidden (or lacks provided-buffer rings,
    Linux 5.19+)."""
    port = CompletionPoller(entries, buffers, buffer_size)
    try:
        return EventLoop(port, name=name, slow_iteration=slow_iteration)
    except BaseException:
        port.close()
        raise
