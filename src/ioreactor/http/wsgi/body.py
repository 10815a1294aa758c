"""``wsgi.input`` for ``--stream-body``: the request body as the reactor receives it.

Data flow::

    loop thread: dispatcher.body(chunk) --feed--> StreamedInput (a deque of chunks)
        --> pool thread: app reads wsgi.input.read(n) / readline() / iteration,
            blocking until a chunk, the end, or the body deadline

Without ``--stream-body`` the body is received whole before the application runs and
``wsgi.input`` is an ``io.BytesIO`` of it. With it, the application runs at the head
and reads while the body arrives; the reactor still enforces ``max_body`` and the body
deadline. Memory is bounded: past ``STREAM_BUFFER`` unread bytes the connection stops
reading until the application catches up. A read that waits longer than ``timeout``
without a byte, or whose connection has gone, raises ``OSError`` in the application.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable, Iterator

#: Unread body bytes held for the application before the connection stops reading.
STREAM_BUFFER = 256 * 1024
#: Seconds between checks, while an application waits for body bytes, that the
#: connection is still there.
WAIT_SLICE = 1.0


class StreamedInput:
    """A file-like body fed by the loop and read by the application's thread."""

    __slots__ = (
        "_chunks",
        "_cond",
        "_ended",
        "_failed",
        "_gone",
        "_held",
        "_pause",
        "_paused",
        "_resume",
        "timeout",
    )

    def __init__(
        self,
        *,
        timeout: float,
        pause: Callable[[], None],
        resume: Callable[[], None],
        gone: Callable[[], bool],
    ) -> None:
        self.timeout = timeout
        self._chunks: collections.deque[bytes] = collections.deque()
        self._held = 0
        self._cond = threading.Condition(threading.Lock())
        self._ended = False
        self._failed: str | None = None
        self._pause = pause
        self._resume = resume
        self._gone = gone
        self._paused = False

    # -- the loop's side -----------------------------------------------------------------

    def feed(self, chunk: bytes) -> None:
        with self._cond:
            if self._ended:
                return  # the application is done: the rest of the body is dropped
            self._chunks.append(chunk)
            self._held += len(chunk)
            self._cond.notify()
            if self._held > STREAM_BUFFER and not self._paused:
                self._paused = True
                self._pause()

    def finish(self) -> None:
        """The body is complete."""
        with self._cond:
            self._ended = True
            self._cond.notify_all()

    def fail(self, reason: str) -> None:
        """The body will not come (the connection ended): a waiting read raises."""
        with self._cond:
            self._failed = reason
            self._cond.notify_all()

    # -- the application's side ----------------------------------------------------------

    def _take(self, size: int, line: bool) -> bytes:
        """Up to ``size`` bytes (-1: all), up to and including a newline when ``line``."""
        parts: list[bytes] = []
        want = size
        with self._cond:
            while want != 0:
                if self._chunks:
                    chunk = self._chunks[0]
                    cut = len(chunk) if want < 0 else min(want, len(chunk))
                    if line:
                        eol = chunk.find(b"\n", 0, cut)
                        if eol >= 0:
                            cut = eol + 1
                    if cut == len(chunk):
                        self._chunks.popleft()
                    else:
                        self._chunks[0] = chunk[cut:]
                    piece = chunk[:cut]
                    parts.append(piece)
                    self._held -= cut
                    if want > 0:
                        want -= cut
                    if line and piece.endswith(b"\n"):
                        break
                    continue
                if self._ended:
                    break
                self._resume_if_drained()
                self._wait()
            self._resume_if_drained()
        return b"".join(parts)

    def _resume_if_drained(self) -> None:
        """Let the connection read again once half the buffer has been taken (holding
        the condition: ``resume`` only queues a call on the loop)."""
        if self._paused and self._held <= STREAM_BUFFER // 2:
            self._paused = False
            self._resume()

    def _wait(self) -> None:
        """Wait for a chunk or the end (called holding the condition)."""
        waited = 0.0
        while not self._chunks and not self._ended:
            if self._failed is not None:
                raise OSError(f"request body: {self._failed}")
            if self._gone():
                raise OSError("request body: the connection closed")
            if waited >= self.timeout:
                raise OSError(f"request body: nothing received for {self.timeout:g} s")
            step = min(WAIT_SLICE, self.timeout - waited)
            self._cond.wait(step)
            waited += step

    def read(self, size: int | None = -1) -> bytes:
        return self._take(-1 if size is None or size < 0 else size, line=False)

    def readline(self, size: int | None = -1) -> bytes:
        return self._take(-1 if size is None or size < 0 else size, line=True)

    def readlines(self, hint: int = -1) -> list[bytes]:
        lines: list[bytes] = []
        total = 0
        while True:
            line = self.readline()
            if not line:
                return lines
            lines.append(line)
            total += len(line)
            if 0 < hint <= total:
                return lines

    def __iter__(self) -> Iterator[bytes]:
        while True:
            line = self.readline()
            if not line:
                return
            yield line

    def close(self) -> None:
        """The application is done with the body: what still arrives is dropped."""
        with self._cond:
            self._ended = True
            self._chunks.clear()
            self._held = 0
            self._resume_if_drained()
