"""Model 2a: blocking I/O, one thread per connection (阻塞 IO + 线程).

Cheaper than a process (threads share the address space and descriptors, so nothing
needs closing on either side), but each connection still costs a thread stack and a
kernel task, and creation fails once the process hits its thread limit.
"""

from __future__ import annotations

import logging
import socket
import threading

from ioreactor_tools.models.acceptor import StoppableAcceptor
from ioreactor_tools.models.base import ModelOptions
from ioreactor_tools.models.handlers import HANDLERS, run_handler
from ioreactor_tools.models.live_connections import LiveConnections

log = logging.getLogger(__name__)


class ThreadPerConnection:
    """Start a thread per accepted connection."""

    def __init__(self, options: ModelOptions) -> None:
        self._handler = HANDLERS[options.protocol]
        self._acceptor = StoppableAcceptor()
        self._conns = LiveConnections()
        self._threads_lock = threading.Lock()
        self._threads: set[threading.Thread] = set()

    def serve(self, listener: socket.socket) -> None:
        self._acceptor.attach(listener)
        try:
            while (conn := self._acceptor.accept()) is not None:
                self._start(conn)
        finally:
            self._conns.shutdown_all()
            with self._threads_lock:
                threads = list(self._threads)
            for thread in threads:
                thread.join()
            self._acceptor.close()

    def stop(self) -> None:
        self._acceptor.stop()

    def _start(self, conn: socket.socket) -> None:
        self._conns.add(conn)
        thread = threading.Thread(target=self._serve_one, args=(conn,), daemon=True)
        with self._threads_lock:
            self._threads.add(thread)
        try:
            thread.start()
        except RuntimeError as exc:  # "can't start new thread": the model's limit
            log.warning("%s; dropping the connection", exc)
            with self._threads_lock:
                self._threads.discard(thread)
            self._conns.close(conn)

    def _serve_one(self, conn: socket.socket) -> None:
        try:
            run_handler(self._handler, conn)
        finally:
            self._conns.close(conn)
            with self._threads_lock:
                self._threads.discard(threading.current_thread())
