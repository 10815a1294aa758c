"""The producer–consumer queue: FIFO, blocking when full or empty, woken by close."""

from __future__ import annotations

import threading

import pytest

from ioreactor_tools.models.blocking_queue import BlockingQueue


def test_fifo_order() -> None:
    queue: BlockingQueue[int] = BlockingQueue(3)
    for i in range(3):
        assert queue.put(i)
    assert [queue.get() for _ in range(3)] == [0, 1, 2]


def test_put_waits_while_full_until_a_get() -> None:
    queue: BlockingQueue[int] = BlockingQueue(1)
    queue.put(1)
    done = threading.Event()
    producer = threading.Thread(target=lambda: done.set() if queue.put(2) else None)
    producer.start()
    assert not done.wait(0.2), "put must block while the queue is full"
    assert queue.get() == 1
    assert done.wait(5)
    assert queue.get() == 2
    producer.join()


def test_close_wakes_a_waiting_consumer_and_producer() -> None:
    empty: BlockingQueue[int] = BlockingQueue(1)
    full: BlockingQueue[int] = BlockingQueue(1)
    full.put(0)
    results: list[object] = []
    threads = [
        threading.Thread(target=lambda: results.append(empty.get())),
        threading.Thread(target=lambda: results.append(full.put(1))),
    ]
    for t in threads:
        t.start()
    empty.close()
    full.close()
    for t in threads:
        t.join(5)
        assert not t.is_alive()
    assert sorted(results, key=repr) == sorted([None, False], key=repr)
    assert full.drain() == [0]
    assert full.drain() == []


def test_capacity_must_be_positive() -> None:
    with pytest.raises(ValueError):
        BlockingQueue(0)
