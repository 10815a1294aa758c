"""CompletionPoller: the operation table, dispatch, and the split of one batch of
completions into readiness events and operation completions."""

from __future__ import annotations

import logging
import os

import pytest

from ioreactor.loop.poller import READ
from ioreactor.loop.uring.completion import CALL, KIND_MASK, OP_TAG, UNWATCHED, channel_key
from support.uring import make_loop, port_of

pytestmark = pytest.mark.timeout(60)


def test_a_failing_completion_handler_is_logged_and_the_batch_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    loop = make_loop()
    port = port_of(loop)
    got: list[tuple[int, int]] = []

    def broken(res: int, flags: int) -> None:
        raise RuntimeError("handler bug")

    first, second = port.call_key(), port.call_key()
    port.ops[first] = broken
    port.ops[second] = lambda res, flags: got.append((res, flags))
    port.ring.prep_nop(first)
    port.ring.prep_nop(second)
    try:
        loop.run_once(1.0)
        if not got:
            loop.run_once(1.0)
        assert got == [(0, 0)]
        assert any("handler bug" in str(r.exc_info) for r in caplog.records if r.exc_info)
        assert all(r.levelno < logging.CRITICAL for r in caplog.records)
        assert loop.lag().iterations >= 1  # and the loop is still usable
        loop.run_once(0)
    finally:
        loop.close()


def test_keys_are_tagged_and_distinct_from_poll_arms_and_each_other() -> None:
    loop = make_loop()
    try:
        keys = {port_of(loop).call_key() for _ in range(1000)}
        channels = [object() for _ in range(1000)]
        channel_keys = {channel_key(c) for c in channels}
        assert len(keys) == len(channel_keys) == 1000
        assert all(k & OP_TAG and k & KIND_MASK == CALL for k in keys)
        assert all(k & OP_TAG and k & KIND_MASK == 0 for k in channel_keys)
        assert UNWATCHED not in keys | channel_keys  # never reaches a handler
    finally:
        loop.close()


def test_unwatched_and_readiness_completions_do_not_reach_the_operation_table() -> None:
    loop = make_loop()
    r, w = os.pipe()
    seen: list[int] = []
    try:
        loop.watch(r, READ, seen.append)
        port_of(loop).ring.prep_nop(UNWATCHED)
        os.write(w, b"x")
        for _ in range(5):
            loop.run_once(0.2)
            if seen:
                break
        assert seen == [READ]
        assert port_of(loop).completions == []  # every batch is consumed by its iteration
        assert port_of(loop).ops == {}
    finally:
        loop.unwatch(r)
        loop.close()
        os.close(r)
        os.close(w)
