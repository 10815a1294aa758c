"""Model 2b: blocking I/O, a fixed thread pool fed by a blocking queue (线程池).

The acceptor thread produces connections into a bounded :class:`BlockingQueue`; ``workers``
threads consume them and each serves its connection until it closes. Thread creation is
paid once, but a worker is tied up for a connection's whole life, so with long-lived
connections the pool size is the concurrency: connection ``workers + 1`` waits in the
queue (and then in the kernel's backlog) until someone hangs up. The course notes this
model suits short connections.
"""

from __future__ import annotations

import socket
import threading

from ioreactor_tools.models.acceptor import StoppableAcceptor
from ioreactor_tools.models.base import ModelOptions
from ioreactor_tools.models.blocking_queue import BlockingQueue
from ioreactor_tools.models.handlers import HANDLERS, run_handler
from ioreactor_tools.models.live_connections import LiveConnections


class ThreadPool:
    """Serve connections on ``options.workers`` threads."""

    def __init__(self, options: ModelOptions) -> None:
        if options.workers < 1:
            raise ValueError("the thread pool needs at least one worker")
        self._handler = HANDLERS[options.protocol]
        self._acceptor = StoppableAcceptor()
        self._queue: BlockingQueue[socket.socket] = BlockingQueue(options.queue_size)
        self._conns = LiveConnections()
        self._workers = [
            threading.Thread(target=self._work, name=f"pool-{i}", daemon=True)
            for i in range(options.workers)
        ]

    def serve(self, listener: socket.socket) -> None:
        self._acceptor.attach(listener)
        for worker in self._workers:
            worker.start()
        try:
            while (conn := self._acceptor.accept()) is not None:
                if not self._queue.put(conn):
                    conn.close()
                    break
        finally:
            self._queue.close()
            for conn in self._queue.drain():
                conn.close()
            self._conns.shutdown_all()
            for worker in self._workers:
                worker.join()
            self._acceptor.close()

    def stop(self) -> None:
        self._acceptor.stop()
        self._queue.close()

    def _work(self) -> None:
        while (conn := self._queue.get()) is not None:
            self._conns.add(conn)
            try:
                run_handler(self._handler, conn)
            finally:
                self._conns.close(conn)
