"""The supervisor <-> worker channel, both ends in this process on a real socketpair.

No fork here: a ParentChannel and a WorkerChannel on one loop, which is all the wire
protocol needs (SEQPACKET messages, SCM_RIGHTS batches, ready and load reports).
"""

from __future__ import annotations

import socket

from ioreactor.loop.event_loop import EventLoop
from ioreactor.multicore.channel import (
    MAX_FDS_PER_MESSAGE,
    ParentChannel,
    WorkerChannel,
    channel_pair,
)
from ioreactor.testing import open_fds, run_until


class Received:
    def __init__(self) -> None:
        self.batches: list[tuple[list[int], int]] = []
        self.parent_gone = False

    def on_fds(self, fds: list[int], family: int) -> None:
        self.batches.append((fds, family))

    def on_gone(self) -> None:
        self.parent_gone = True


def connected_pairs(n: int) -> list[tuple[socket.socket, socket.socket]]:
    return [socket.socketpair() for _ in range(n)]


def test_fds_accepted_in_one_iteration_leave_in_one_message_each_way_intact(
    loop: EventLoop,
) -> None:
    parent_end, worker_end = channel_pair()
    worker_copy = worker_end.dup()  # the worker's own reference, as after fork
    parent = ParentChannel(loop, 0, parent_end, worker_end, socket.AF_INET)
    got = Received()
    worker = WorkerChannel(loop, worker_copy, got.on_fds, got.on_gone)
    pairs = connected_pairs(MAX_FDS_PER_MESSAGE + 7)
    try:
        for _, theirs in pairs:
            parent.queue_fd(theirs.detach())
        assert parent.load == len(pairs), "queued fds count as load before they leave"
        loop.flush()  # end of the iteration: the outbox leaves
        assert parent.sent == len(pairs) and parent.outbox == []
        run_until(loop, lambda: worker.received == len(pairs))
        assert [len(fds) for fds, _ in got.batches] == [MAX_FDS_PER_MESSAGE, 7]
        assert {family for _, family in got.batches} == {socket.AF_INET}
        fds = [fd for batch, _ in got.batches for fd in batch]
        for (ours, _), fd in zip(pairs, fds, strict=True):
            passed = socket.socket(fileno=fd)
            ours.sendall(b"through the channel")
            assert passed.recv(64) == b"through the channel"
            passed.close()
        worker.report(active=3)
        worker.ready()
        readies: list[ParentChannel] = []
        parent.on_ready = readies.append
        run_until(loop, lambda: readies == [parent])
        assert (parent.active, parent.received) == (3, len(pairs))
        assert parent.load == 3
    finally:
        for ours, _ in pairs:
            ours.close()
        worker.close()
        parent.close()


def test_a_full_channel_blocks_keeps_its_fds_and_gives_back_what_was_never_received(
    loop: EventLoop,
) -> None:
    """A worker that stops reading: the channel fills, says so, and nothing leaks."""
    before = open_fds()
    parent_end, worker_end = channel_pair()
    parent = ParentChannel(loop, 1, parent_end, worker_end)
    blocked: list[ParentChannel] = []
    parent.on_blocked = blocked.append
    pairs = []
    while not blocked:  # nobody reads the worker end
        ours, theirs = socket.socketpair()
        pairs.append(ours)
        parent.queue_fd(theirs.detach())
        loop.flush()
        assert len(pairs) < 100_000, "the channel never filled"
    assert parent.blocked and blocked == [parent]
    assert len(parent.outbox) == 1, "the fd that did not fit stays with the supervisor"
    in_flight = parent.sent
    undelivered = parent.close()  # the worker died: read back what it never received
    assert len(undelivered) == in_flight + 1
    for fd in undelivered:
        socket.socket(fileno=fd).close()
    for ours in pairs:
        ours.close()
    assert open_fds() == before


def test_worker_sees_its_supervisor_go(loop: EventLoop) -> None:
    parent_end, worker_end = channel_pair()
    got = Received()
    worker = WorkerChannel(loop, worker_end, got.on_fds, got.on_gone)
    parent_end.close()
    run_until(loop, lambda: got.parent_gone)
    worker.close()
