"""Decode on the loop, compute in a worker pool, encode on the loop: the course's model.

::

    loop thread   bytes -> Buffer -> decode a line -> loop.run_in_pool(work, arg, on_done=...)
    pool          count_primes(n)  in a process pool: CPU work runs outside the GIL
                  blocking_call(ms) in a thread pool: blocking work off the loop
    loop thread   on_done(future) -> encode the answer -> conn.send()

The loop never waits: while the pools work it keeps serving every other connection. The
answers of one connection go out in the order its requests came, even when the pool
finishes them out of order (a per-connection sequence number and a reorder buffer, the
way HTTP/1.1 pipelining must answer).

Protocol, one request per line::

    primes N   -> "N: P primes below N"    (process pool)
    sleep MS   -> "slept MS ms"            (thread pool; stands for a blocking API call)
    ping       -> "pong"                   (answered on the loop, still in order)

Run:  python examples/worker_pool.py --listen 127.0.0.1:7100
Try:  printf 'sleep 300\\nprimes 1000000\\nping\\n' | nc -q1 127.0.0.1 7100

It runs on :func:`ioreactor.multicore.run_server`, so ``--workers``/``--loops`` work
too; every serving process then has pools of its own.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import functools
import logging
import sys
import time
from collections.abc import Callable
from typing import Any, Literal

from ioreactor.cli.arguments import add_serving_arguments, serving_options
from ioreactor.multicore import run_server
from ioreactor.net.buffer import Buffer
from ioreactor.net.connection import TcpConnection
from ioreactor.net.handlers import Handler

#: Longest request line; a longer one is a protocol error.
MAX_LINE = 256
#: Requests of one connection in the pools at once; decoding pauses above it.
MAX_IN_FLIGHT = 64
#: Undecoded input a connection may pile up while its requests wait; beyond, it is closed.
MAX_PENDING_INPUT = 64 * 1024
#: Largest N for ``primes`` (the sieve takes N bytes) and MS for ``sleep``.
MAX_PRIMES = 50_000_000
MAX_SLEEP_MS = 10_000

log = logging.getLogger("worker_pool")


# -- the work: plain functions (the process pool pickles them by name) --------------------


def count_primes(n: int) -> int:
    """Primes below ``n`` (sieve of Eratosthenes): CPU-bound, about a second for 30 M."""
    if n < 3:
        return 0
    sieve = bytearray([1]) * n
    sieve[0] = sieve[1] = 0
    for i in range(2, int(n**0.5) + 1):
        if sieve[i]:
            sieve[i * i :: i] = bytes(len(range(i * i, n, i)))
    return sieve.count(1)


def blocking_call(ms: int) -> int:
    """A call that blocks its thread (think: a database driver without async support)."""
    time.sleep(ms / 1000)
    return ms


#: command -> (work, largest argument, pool kind)
COMMANDS: dict[bytes, tuple[Callable[[int], int], int, Literal["thread", "process"]]] = {
    b"primes": (count_primes, MAX_PRIMES, "process"),
    b"sleep": (blocking_call, MAX_SLEEP_MS, "thread"),
}


# -- decode and encode on the loop ---------------------------------------------------------


class Session:
    """One connection's place in the order of its answers."""

    __slots__ = ("closing", "next_ticket", "next_to_send", "ready")

    def __init__(self) -> None:
        self.next_ticket = 0  # given to the next request decoded
        self.next_to_send = 0  # the answer the client is waiting for
        self.ready: dict[int, bytes] = {}  # answers that finished ahead of their turn
        self.closing = False

    @property
    def in_flight(self) -> int:
        return self.next_ticket - self.next_to_send


class WorkerPoolHandler(Handler):
    def on_connection(self, conn: TcpConnection) -> None:
        conn.context = Session()

    def on_message(self, conn: TcpConnection, buffer: Buffer) -> None:
        session: Session = conn.context
        while session.in_flight < MAX_IN_FLIGHT and not session.closing:
            end = buffer.find(b"\n")
            if end < 0:
                if len(buffer) > MAX_LINE:
                    self._fail(conn, session, b"error: line too long")
                return
            self._dispatch(conn, session, buffer.read(end + 1).strip())
        if len(buffer) > MAX_PENDING_INPUT:
            self._fail(conn, session, b"error: too many requests in flight")

    def _dispatch(self, conn: TcpConnection, session: Session, line: bytes) -> None:
        """Decode one request and start it; its answer is encoded in :meth:`_finished`."""
        ticket = session.next_ticket
        session.next_ticket += 1
        command, _, arg = line.partition(b" ")
        if command == b"ping":
            self._answer(conn, session, ticket, b"pong")
            return
        if command not in COMMANDS or not arg.isdigit() or int(arg) > COMMANDS[command][1]:
            self._answer(conn, session, ticket, b"error: bad request " + line[:MAX_LINE])
            return
        work, _, kind = COMMANDS[command]
        conn.loop.run_in_pool(
            work,
            int(arg),
            on_done=functools.partial(self._finished, conn, ticket, command, int(arg)),
            kind=kind,
        )

    def _finished(
        self,
        conn: TcpConnection,
        ticket: int,
        command: bytes,
        arg: int,
        future: concurrent.futures.Future[Any],
    ) -> None:
        """Back on the connection's loop: encode the result."""
        session: Session = conn.context
        try:
            result = future.result()
        except Exception as exc:
            log.warning("%s %d failed: %s", command.decode(), arg, exc)
            answer = b"error: " + str(exc).encode()[:MAX_LINE]
        else:
            if command == b"primes":
                answer = b"%d: %d primes below %d" % (arg, result, arg)
            else:
                answer = b"slept %d ms" % result
        self._answer(conn, session, ticket, answer)
        if not session.closing and len(conn.input):
            self.on_message(conn, conn.input)  # decoding paused at MAX_IN_FLIGHT: resume

    def _answer(self, conn: TcpConnection, session: Session, ticket: int, answer: bytes) -> None:
        """Send every answer whose turn has come; keep the early ones until then."""
        session.ready[ticket] = answer
        while session.next_to_send in session.ready:
            conn.send(session.ready.pop(session.next_to_send) + b"\n")
            session.next_to_send += 1
        if session.closing and not session.in_flight:
            conn.close()

    def _fail(self, conn: TcpConnection, session: Session, why: bytes) -> None:
        self._answer(conn, session, session.next_ticket, why)
        session.next_ticket += 1
        session.closing = True
        conn.input.retrieve_all()
        if not session.in_flight:
            conn.close()

    def on_shutdown(self, conn: TcpConnection) -> None:
        """Graceful stop: answer what is in the pools, then close."""
        session: Session = conn.context
        session.closing = True
        if not session.in_flight:
            conn.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_serving_arguments(parser, default_listen="127.0.0.1:7100")
    parser.set_defaults(workers=0)  # one process; its pools use the other cores
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    return run_server(WorkerPoolHandler, **serving_options(args))


if __name__ == "__main__":
    sys.exit(main())
