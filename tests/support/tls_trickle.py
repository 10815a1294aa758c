"""A slowloris of TLS, run as a process of its own by the tests: ``count`` connections
each trickling a real ClientHello one byte every ``interval`` seconds, never finishing
it, each replaced by a new one when the server closes it. Prints one JSON line when
``duration`` is over: connections opened, closed by the server, and how long the closed
ones lived.

    python tls_trickle.py PORT COUNT INTERVAL DURATION HELLO_HEX
"""

from __future__ import annotations

import json
import selectors
import socket
import sys
import time


def main(port: int, count: int, interval: float, duration: float, hello: bytes) -> None:
    sel = selectors.DefaultSelector()
    born: dict[socket.socket, float] = {}
    sent: dict[socket.socket, int] = {}
    lifetimes: list[float] = []
    opened = 0
    completed = 0

    def open_one() -> None:
        nonlocal opened
        sock = socket.create_connection(("127.0.0.1", port))
        sock.setblocking(False)
        sel.register(sock, selectors.EVENT_READ)
        born[sock] = time.monotonic()
        sent[sock] = 0
        opened += 1

    end = time.monotonic() + duration
    for _ in range(count):
        open_one()
    # Each connection sends its next byte in its own slot of the interval.
    slot = interval / count
    next_turn = time.monotonic()
    turn = 0
    while time.monotonic() < end:
        for key, _ in sel.select(timeout=max(0.0, min(slot, next_turn - time.monotonic()))):
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            try:
                data = sock.recv(4096)
            except (ConnectionResetError, BlockingIOError):
                data = b""
            if data:
                completed += 1  # the server answered a half hello: must never happen
                continue
            lifetimes.append(time.monotonic() - born.pop(sock))
            sent.pop(sock)
            sel.unregister(sock)
            sock.close()
            open_one()
        if time.monotonic() >= next_turn:
            socks = list(sent)
            if socks:
                sock = socks[turn % len(socks)]
                position = sent[sock]
                if position < len(hello) - 1:  # never the last byte
                    try:
                        sock.send(hello[position : position + 1])
                        sent[sock] = position + 1
                    except OSError:
                        pass
            turn += 1
            next_turn += slot
    print(
        json.dumps(
            {
                "opened": opened,
                "closed": len(lifetimes),
                "answered": completed,
                "lifetimes": lifetimes,
                "open": len(sent),
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main(
        int(sys.argv[1]),
        int(sys.argv[2]),
        float(sys.argv[3]),
        float(sys.argv[4]),
        bytes.fromhex(sys.argv[5]),
    )
