"""The system calls of the read and write paths, as the socket module makes them.

This is the pure build's half of a pair: the compiled build cimports ``csysio.pxd``
instead, whose functions of the same names and signatures make the same system calls
directly on the fd -- without the socket module's argument parsing and its release and
re-acquisition of the GIL around a call that cannot block (the socket is non-blocking).
Both raise what ``socket.socket``'s methods raise: ``BlockingIOError`` when the kernel has
nothing to give or take, ``InterruptedError``, ``OSError`` subclasses on errors.
"""

from __future__ import annotations

import socket


def sock_recv_into(sock: socket.socket, fd: int, buffer: bytearray) -> int:
    """``recv`` into ``buffer`` (the loop's scratch buffer); 0 at end of stream."""
    return sock.recv_into(buffer)


def sock_send(sock: socket.socket, fd: int, data: bytes | memoryview) -> int:
    """``send`` of ``data``; how many bytes the kernel took."""
    return sock.send(data)
