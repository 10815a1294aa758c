"""A hand-written WebSocket peer for tests: frames built and parsed without ioreactor's
codec (so a test of the codec cannot agree with itself by mistake), and a blocking client
that can send what no correct client would.

``build_frame`` writes any frame, valid or not; ``FrameReader`` parses a server's frames
from a byte stream; ``RawClient`` does the opening handshake over a plain socket, then
sends hand-built frames and reads the server's frames until its close and EOF.
"""

from __future__ import annotations

import base64
import hashlib
import os
import socket
import struct
import time
from dataclasses import dataclass

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#: Seconds a test waits for something that must happen (generous: the machine is shared).
LIVENESS = 20.0

TEXT, BINARY, CONTINUATION, CLOSE, PING, PONG = 0x1, 0x2, 0x0, 0x8, 0x9, 0xA
RSV1, RSV2, RSV3 = 0x40, 0x20, 0x10


def xor_mask(payload: bytes, key: bytes) -> bytes:
    """The plain per-byte loop, as RFC 6455 §5.3 states it."""
    return bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def build_frame(
    opcode: int,
    payload: bytes = b"",
    *,
    fin: bool = True,
    rsv: int = 0,
    mask: bool = True,
    key: bytes = b"\x37\xfa\x21\x3d",
    length: int | None = None,
) -> bytes:
    """One frame; ``length`` overrides the announced payload length (to lie about it)."""
    first = (0x80 if fin else 0) | rsv | opcode
    n = len(payload) if length is None else length
    mask_bit = 0x80 if mask else 0
    if n < 126:
        header = bytes((first, mask_bit | n))
    elif n < 0x10000:
        header = struct.pack("!BBH", first, mask_bit | 126, n)
    else:
        header = struct.pack("!BBQ", first, mask_bit | 127, n)
    if mask:
        return header + key + xor_mask(payload, key)
    return header + payload


def close_payload(code: int, reason: bytes = b"") -> bytes:
    return struct.pack("!H", code) + reason


@dataclass
class Frame:
    fin: bool
    rsv: int
    opcode: int
    payload: bytes

    def close_code(self) -> tuple[int | None, bytes]:
        assert self.opcode == CLOSE, f"not a close frame: {self}"
        if not self.payload:
            return None, b""
        return struct.unpack("!H", self.payload[:2])[0], self.payload[2:]


class FrameReader:
    """Frames from a byte stream (masked or not), as they complete."""

    def __init__(self) -> None:
        self.data = b""

    def feed(self, data: bytes) -> list[Frame]:
        self.data += data
        frames = []
        while True:
            frame = self._one()
            if frame is None:
                return frames
            frames.append(frame)

    def _one(self) -> Frame | None:
        data = self.data
        if len(data) < 2:
            return None
        b0, b1 = data[0], data[1]
        n = b1 & 0x7F
        pos = 2
        if n == 126:
            if len(data) < 4:
                return None
            n = struct.unpack("!H", data[2:4])[0]
            pos = 4
        elif n == 127:
            if len(data) < 10:
                return None
            n = struct.unpack("!Q", data[2:10])[0]
            pos = 10
        key = None
        if b1 & 0x80:
            key = data[pos : pos + 4]
            pos += 4
        if len(data) < pos + n:
            return None
        payload = data[pos : pos + n]
        if key is not None:
            payload = xor_mask(payload, key)
        self.data = data[pos + n :]
        return Frame(bool(b0 & 0x80), b0 & 0x70, b0 & 0x0F, payload)


def accept_for(key: str) -> str:
    return base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()


class RawClient:
    """A blocking client on 127.0.0.1:``port``; use as a context manager."""

    def __init__(self, port: int, timeout: float = LIVENESS) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.reader = FrameReader()
        self.frames: list[Frame] = []
        self.key = base64.b64encode(os.urandom(16)).decode()

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()

    def request(self, *extra: str, key: str | None = None, path: str = "/") -> bytes:
        lines = [
            f"GET {path} HTTP/1.1",
            "Host: 127.0.0.1",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {key or self.key}",
            "Sec-WebSocket-Version: 13",
            *extra,
        ]
        return ("\r\n".join(lines) + "\r\n\r\n").encode()

    def read_head(self) -> tuple[int, dict[str, str], bytes]:
        """The response's status, its fields (last value wins, lower-case names) and
        what came after the head."""
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"EOF inside the response head: {data!r}")
            data += chunk
        head, rest = data.split(b"\r\n\r\n", 1)
        status_line, *lines = head.decode("latin-1").split("\r\n")
        fields = {}
        for line in lines:
            name, value = line.split(":", 1)
            fields[name.strip().lower()] = value.strip()
        return int(status_line.split()[1]), fields, rest

    def handshake(self, *extra: str) -> dict[str, str]:
        self.sock.sendall(self.request(*extra))
        status, fields, rest = self.read_head()
        assert status == 101, (status, fields)
        assert fields["sec-websocket-accept"] == accept_for(self.key)
        self.frames.extend(self.reader.feed(rest))
        return fields

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def recv_frame(self) -> Frame | None:
        """The next frame from the server, or None at EOF."""
        while not self.frames:
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                return None
            if not chunk:
                return None
            self.frames.extend(self.reader.feed(chunk))
        return self.frames.pop(0)

    def expect_close(self) -> tuple[int | None, bytes]:
        """Read past any data frames to the server's close frame; answer it with a close
        frame as a client does (RFC 6455 5.5.1: a server that started the close waits
        for it); return its code and reason, after checking that the server then ends
        the connection."""
        while True:
            frame = self.recv_frame()
            assert frame is not None, "EOF before a close frame"
            if frame.opcode == CLOSE:
                break
        code = frame.close_code()
        try:
            self.send(build_frame(CLOSE, close_payload(1000, b"")))
        except OSError:
            pass  # the server had ended it already (the close frames had crossed)
        assert self.read_to_eof() == b"", "data after the close frame"
        return code

    def read_to_eof(self, timeout: float = LIVENESS) -> bytes:
        """Everything until the server closes (a reset counts as the end)."""
        self.sock.settimeout(timeout)
        data = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                return data
            if not chunk:
                return data
            data += chunk
        raise TimeoutError("the server did not close the connection")
