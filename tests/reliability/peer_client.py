"""A misbehaving HTTP client the fault tests run as a process, so they can kill or stop it.

``python peer_client.py MODE PORT``; it prints ``ready`` once it has done its part, then:

``partial-head``  sent half a request head; reads until the server closes, prints what
                  it got (``got <first line>`` or ``got EOF``), exits
``partial-body``  sent a head promising 1 MB and 1 KB of it; sleeps (until killed)
``keepalive``     got one response on a keep-alive connection; then as ``partial-head``
"""

from __future__ import annotations

import socket
import sys
import time


def read_to_end(sock: socket.socket) -> bytes:
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return data
        if not chunk:
            return data
        data += chunk


def main() -> None:
    mode, port = sys.argv[1], int(sys.argv[2])
    sock = socket.create_connection(("127.0.0.1", port))
    if mode == "partial-head":
        sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nX-Half: ")
    elif mode == "partial-body":
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 1000000\r\n\r\n")
        sock.sendall(b"b" * 1000)
    elif mode == "keepalive":
        sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        head = b""
        while not head.endswith(b"Hello, World!"):
            head += sock.recv(65536)
    else:
        raise SystemExit(f"unknown mode {mode}")
    print("ready", flush=True)
    if mode == "partial-body":
        time.sleep(3600)
    data = read_to_end(sock)
    first = data.split(b"\r\n", 1)[0].decode("latin-1") if data else "EOF"
    print(f"got {first}", flush=True)


if __name__ == "__main__":
    main()
