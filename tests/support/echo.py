"""Pushing payloads through an echo server, many connections at once, from one thread.

``echo_many(address, payloads)`` opens one connection per payload, sends while it reads
(non-blocking sockets under one selector: a server that pauses reading can never
deadlock it), and returns what each connection got back once it has as many bytes as it
sent; the caller compares.
"""

from __future__ import annotations

import selectors
import socket
import time
from collections.abc import Sequence

#: Bytes offered to one send() (the kernel takes what fits).
SEND_CHUNK = 256 * 1024


def echo_many(
    address: tuple[str, int], payloads: Sequence[bytes], timeout: float = 30.0
) -> list[bytes]:
    """What came back on each connection; AssertionError if one closes early or the
    echo is incomplete after ``timeout`` seconds."""
    sel = selectors.DefaultSelector()
    got: list[bytearray] = []
    pending: list[memoryview] = []
    socks: list[socket.socket] = []
    try:
        for i, data in enumerate(payloads):
            sock = socket.create_connection(address, timeout=timeout)
            sock.setblocking(False)
            socks.append(sock)
            got.append(bytearray())
            pending.append(memoryview(data))
            sel.register(sock, selectors.EVENT_READ | selectors.EVENT_WRITE, i)
        remaining = sum(1 for data in payloads if data)
        deadline = time.monotonic() + timeout
        while remaining:
            if time.monotonic() > deadline:
                short = {
                    i: (len(got[i]), len(data))
                    for i, data in enumerate(payloads)
                    if len(got[i]) < len(data)
                }
                raise AssertionError(f"echo incomplete (got, sent) per connection: {short}")
            for key, events in sel.select(0.5):
                i = key.data
                sock = socks[i]
                if events & selectors.EVENT_WRITE and pending[i]:
                    try:
                        n = sock.send(pending[i][:SEND_CHUNK])
                    except BlockingIOError:
                        n = 0
                    pending[i] = pending[i][n:]
                    if not pending[i]:
                        sel.modify(sock, selectors.EVENT_READ, i)
                if events & selectors.EVENT_READ:
                    try:
                        chunk = sock.recv(1 << 20)
                    except BlockingIOError:
                        continue
                    if not chunk:
                        raise AssertionError(
                            f"connection {i} closed by the server after {len(got[i])} bytes"
                        )
                    got[i] += chunk
                    if len(got[i]) >= len(payloads[i]):
                        sel.unregister(sock)
                        remaining -= 1
    finally:
        sel.close()
        for sock in socks:
            sock.close()
    return [bytes(g) for g in got]
